"""``RegionalBlobs``: one blob store per region, and the residency rule between them.

A tenant's home region (its policy's ``region``, else the server's default region) decides
which store keeps its artifacts. Asking for another region's store on the tenant's behalf — a
write aimed elsewhere, or a read of an artifact recorded in another region (the tenant moved) —
raises ``RegionDenied`` and logs a warning: bytes never cross regions silently.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from shipyard.errors import RegionDenied
from shipyard.stores.blobs.base import BlobStore

__all__ = ["RegionalBlobs"]

log = structlog.get_logger("shipyard.blobs")


class RegionalBlobs:
    """The blob stores of every configured region, and the default region's name."""

    def __init__(self, stores: Mapping[str, BlobStore], *, default_region: str) -> None:
        if default_region not in stores:
            raise ValueError(f"no blob store for the default region {default_region!r}")
        self.stores = dict(stores)
        self.default_region = default_region

    def home(self, region: str | None) -> str:
        """A tenant's home region: its policy's, else the default."""
        return region or self.default_region

    def store(self, region: str, *, home: str, tenant_id: str, action: str) -> BlobStore:
        """The store of ``region`` for a tenant whose home is ``home``; ``RegionDenied`` (logged)
        when they differ or the region has no store."""
        if region != home:
            log.warning(
                "blob.region_denied", tenant_id=tenant_id, action=action, region=region, home=home
            )
            raise RegionDenied(
                f"artifact {action} in region {region!r} refused: the tenant's data lives in "
                f"{home!r}",
                details={"region": region, "home": home},
            )
        found = self.stores.get(region)
        if found is None:
            log.warning("blob.region_unknown", tenant_id=tenant_id, action=action, region=region)
            raise RegionDenied(
                f"no artifact store serves region {region!r}", details={"region": region}
            )
        return found

    async def ping(self) -> None:
        for store in self.stores.values():
            await store.ping()

    async def close(self) -> None:
        for store in self.stores.values():
            await store.close()
