"""Artifact records on SQLite and PostgreSQL: scoped to their tenant, listed by run."""

from __future__ import annotations

from datetime import UTC, datetime

from shipyard.stores.records.artifacts_base import ArtifactRecord
from shipyard.stores.records.sql import SqlRecordStore
from shipyard.telemetry.events import new_id


def artifact(tenant_id: str, run_id: str | None, name: str = "report.txt") -> ArtifactRecord:
    artifact_id = new_id("art")
    return ArtifactRecord(
        id=artifact_id,
        tenant_id=tenant_id,
        run_id=run_id,
        name=name,
        content_type="text/plain",
        size=5,
        sha256="a" * 64,
        region="eu-a",
        blob_key=f"{tenant_id}/{artifact_id}",
        created_at=datetime.now(UTC),
    )


async def test_artifacts_round_trip_scoped_to_their_tenant(store: SqlRecordStore) -> None:
    first, second = artifact("t1", "run_1"), artifact("t1", "run_1", "b.txt")
    other_run, other_tenant = artifact("t1", "run_2"), artifact("t2", "run_1")
    for record in (first, second, other_run, other_tenant):
        await store.add_artifact(record)
    assert await store.get_artifact("t1", first.id) == first
    assert await store.get_artifact("t2", first.id) is None
    page = await store.list_artifacts("t1", run_id="run_1")
    assert [a.id for a in page.items] == sorted([first.id, second.id], reverse=True)
    assert all(a.region == "eu-a" for a in page.items)
    assert [a.id for a in (await store.list_artifacts("t2")).items] == [other_tenant.id]
    assert await store.delete_artifact("t2", first.id) is False
    assert await store.delete_artifact("t1", first.id) is True
    assert await store.get_artifact("t1", first.id) is None
