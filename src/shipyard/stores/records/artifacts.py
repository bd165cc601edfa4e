"""``SqlArtifactRecords``: artifacts' rows (``artifacts_base.ArtifactRecords``)."""

from __future__ import annotations

from shipyard.stores.records._database import Database
from shipyard.stores.records.artifacts_base import ArtifactRecord
from shipyard.stores.records.base import Page
from shipyard.stores.records.schema import artifacts

__all__ = ["SqlArtifactRecords"]


class SqlArtifactRecords:
    """``ArtifactRecords`` over a shared ``Database``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_artifact(self, artifact: ArtifactRecord) -> None:
        stmt = artifacts.insert().values(artifact.model_dump())
        await self._db.write("add_artifact", lambda conn: conn.execute(stmt))

    async def get_artifact(self, tenant_id: str, artifact_id: str) -> ArtifactRecord | None:
        query = artifacts.select().where(
            artifacts.c.tenant_id == tenant_id, artifacts.c.id == artifact_id
        )
        rows = await self._db.fetch("get_artifact", query)
        return ArtifactRecord.model_validate(rows[0]) if rows else None

    async def list_artifacts(
        self,
        tenant_id: str,
        *,
        run_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[ArtifactRecord]:
        query = artifacts.select().where(artifacts.c.tenant_id == tenant_id)
        if run_id is not None:
            query = query.where(artifacts.c.run_id == run_id)
        key = artifacts.c.id
        return await self._db.page("list_artifacts", query, key, ArtifactRecord, limit, cursor)

    async def delete_artifact(self, tenant_id: str, artifact_id: str) -> bool:
        stmt = artifacts.delete().where(
            artifacts.c.tenant_id == tenant_id, artifacts.c.id == artifact_id
        )
        result = await self._db.write("delete_artifact", lambda conn: conn.execute(stmt))
        return result.rowcount > 0
