"""``ArtifactService``: runs' artifacts — the record in the record store, the bytes in the blob
store of the tenant's home region.

A put streams the bytes into the region's store (size-capped, digested on the way), then writes
the record; a read finds the record (404 for another tenant's id as for an unknown one), checks
the region rule, and streams the bytes back, checked against the sha256 taken at write time
(the store checks its own copy of the digest; the record's is compared here too).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from shipyard.errors import ArtifactNotFound, ChecksumMismatch, InvalidInput, PayloadTooLarge
from shipyard.runtime.tenants import TenantPolicies
from shipyard.stores.blobs.base import BlobNotFound, BlobStore, Presigner
from shipyard.stores.blobs.regions import RegionalBlobs
from shipyard.stores.records.artifacts_base import ArtifactRecord, ArtifactRecords
from shipyard.telemetry.events import new_id

__all__ = ["ArtifactService", "Download"]

MAX_NAME = 256


@dataclass(frozen=True, slots=True)
class Download:
    """How to serve an artifact: a presigned ``url`` to redirect to, or ``chunks`` to stream."""

    record: ArtifactRecord
    url: str | None = None
    chunks: AsyncIterator[bytes] | None = None


class ArtifactService:
    """Puts and reads artifacts across the record store and the regional blob stores."""

    def __init__(
        self,
        records: ArtifactRecords,
        blobs: RegionalBlobs,
        tenants: TenantPolicies,
        *,
        max_bytes: int,
        presign_s: int = 0,
    ) -> None:
        """``max_bytes``: the largest artifact; ``presign_s`` > 0: downloads redirect to a URL
        valid that long, where the region's store can presign (S3)."""
        self.records = records
        self.blobs = blobs
        self.tenants = tenants
        self.max_bytes = max_bytes
        self.presign_s = presign_s

    async def home(self, tenant_id: str) -> str:
        return self.blobs.home((await self.tenants.policy(tenant_id)).region)

    async def put(
        self,
        tenant_id: str,
        data: bytes | str | AsyncIterable[bytes],
        *,
        name: str,
        content_type: str = "application/octet-stream",
        run_id: str | None = None,
        region: str | None = None,
    ) -> ArtifactRecord:
        """Store an artifact in the tenant's home region (``region``, if given, must be it)."""
        if not name or len(name) > MAX_NAME or "\x00" in name:
            raise InvalidInput(f"an artifact name is 1 to {MAX_NAME} characters, without NUL")
        home = await self.home(tenant_id)
        store = self.blobs.store(region or home, home=home, tenant_id=tenant_id, action="write")
        artifact_id = new_id("art")
        key = f"{tenant_prefix(tenant_id)}/{artifact_id}"
        info = await store.put(key, self._capped(data), content_type=content_type)
        record = ArtifactRecord(
            id=artifact_id,
            tenant_id=tenant_id,
            run_id=run_id,
            name=name,
            content_type=content_type,
            size=info.size,
            sha256=info.sha256,
            region=region or home,
            blob_key=key,
            created_at=datetime.now(UTC),
        )
        try:
            await self.records.add_artifact(record)
        except BaseException:
            with contextlib.suppress(Exception):  # no blob left without its record
                await store.delete(key)
            raise
        return record

    async def get(self, tenant_id: str, artifact_id: str) -> ArtifactRecord:
        found = await self.records.get_artifact(tenant_id, artifact_id)
        if found is None:
            raise ArtifactNotFound(f"no artifact {artifact_id!r}")
        return found

    async def download(
        self, tenant_id: str, artifact_id: str, span: tuple[int, int] | None = None
    ) -> Download:
        """The artifact to serve: a redirect URL, or its bytes — whole and checked as they
        stream, or the bytes ``span`` (first and last, inclusive) as they are."""
        record = await self.get(tenant_id, artifact_id)
        store = await self._store_of(record, action="read")
        if self.presign_s > 0 and isinstance(store, Presigner):
            url = await store.presign_get(record.blob_key, expires_s=self.presign_s)
            return Download(record, url=url)
        return Download(record, chunks=await self._open(store, record, span))

    async def read(self, record: ArtifactRecord) -> AsyncIterator[bytes]:
        """The artifact's bytes, checked as they stream (never a redirect: for the server's
        own use, as an input that references an artifact)."""
        return await self._open(await self._store_of(record, action="read"), record, None)

    async def _open(
        self, store: BlobStore, record: ArtifactRecord, span: tuple[int, int] | None
    ) -> AsyncIterator[bytes]:
        if await store.head(record.blob_key) is None:
            raise ArtifactNotFound(f"artifact {record.id!r} has no content")
        if span is not None:
            return store.get(record.blob_key, start=span[0], end=span[1])
        return _checked(store, record)

    async def _store_of(self, record: ArtifactRecord, *, action: str) -> BlobStore:
        home = await self.home(record.tenant_id)
        return self.blobs.store(record.region, home=home, tenant_id=record.tenant_id, action=action)

    async def _capped(self, data: bytes | str | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        if isinstance(data, str):
            data = data.encode()
        if isinstance(data, bytes):
            if len(data) > self.max_bytes:
                raise PayloadTooLarge(f"artifact over {self.max_bytes} bytes")
            yield data
            return
        seen = 0
        async for chunk in data:
            seen += len(chunk)
            if seen > self.max_bytes:
                raise PayloadTooLarge(f"artifact over {self.max_bytes} bytes")
            yield chunk


def tenant_prefix(tenant_id: str) -> str:
    """The blob key folder of a tenant: a digest, so any tenant id makes a safe key."""
    return "t-" + hashlib.sha256(tenant_id.encode()).hexdigest()[:32]


async def _checked(store: BlobStore, record: ArtifactRecord) -> AsyncIterator[bytes]:
    """The blob's bytes, checked against the record's sha256 before the last chunk leaves."""
    digest, seen = hashlib.sha256(), 0
    try:
        async for chunk in store.get(record.blob_key):
            digest.update(chunk)
            seen += len(chunk)
            if seen >= record.size and digest.hexdigest() != record.sha256:
                raise ChecksumMismatch(
                    f"artifact {record.id}: content does not match its sha256",
                    details={"operation": "artifact checksum"},
                )
            yield chunk
    except BlobNotFound as exc:
        raise ArtifactNotFound(f"artifact {record.id!r} has no content") from exc
