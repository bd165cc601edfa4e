"""Artifacts' records (``ArtifactRecords``), part of ``base.RecordStore``.

An artifact's bytes live in the blob store of its region (``stores.blobs``); its record here
says what it is, which run made it, where its bytes are (``region``, ``blob_key``) and their
sha256, so a read can check them. Every query is scoped to a tenant.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # base composes this protocol into RecordStore
    from shipyard.stores.records.base import Page


class ArtifactRecord(BaseModel):
    """One artifact: a named, typed blob a run (or an upload) produced."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Time-ordered (``art_...``): artifacts sort and page by it.")
    tenant_id: str
    run_id: str | None = Field(None, description="The run that made it; None: an upload.")
    name: str
    content_type: str
    size: int
    sha256: str
    region: str = Field(description="The region whose blob store holds the bytes.")
    blob_key: str
    created_at: datetime


class ArtifactRecords(Protocol):
    async def add_artifact(self, artifact: ArtifactRecord) -> None: ...

    async def get_artifact(self, tenant_id: str, artifact_id: str) -> ArtifactRecord | None:
        """The tenant's artifact; None for another tenant's id as for an unknown one."""
        ...

    async def list_artifacts(
        self,
        tenant_id: str,
        *,
        run_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[ArtifactRecord]:
        """Newest first; ``run_id``: only that run's."""
        ...

    async def delete_artifact(self, tenant_id: str, artifact_id: str) -> bool: ...
