"""Migration 0015: the retention sweep's selects (a tenant's rows older than a date, per table)
are served by their ``(tenant_id, <age column>)`` index, on SQLite and PostgreSQL (EXPLAIN), and
the migration applies, reverts and applies again on both."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection

from shipyard.stores.records import engines
from shipyard.stores.records.lifecycle import PRUNED, old_rows
from shipyard.stores.records.sql import SqlRecordStore
from tests.stores.records.test_subjects import backend, empty_url, upgrade_to

__all__ = ["backend", "empty_url"]  # the fixtures

INDEXES = {
    "runs": "ix_runs_tenant_id_created_at",
    "run_events": "ix_run_events_tenant_id_ts",
    "tasks": "ix_tasks_tenant_id_updated_at",
    "sessions": "ix_sessions_tenant_id_created_at",
    "artifacts": "ix_artifacts_tenant_id_created_at",
    "webhook_deliveries": "ix_webhook_deliveries_tenant_id_updated_at",
}
BEFORE = datetime(2026, 1, 1, tzinfo=UTC)


def downgrade_to(revision: str) -> object:
    def go(conn: Connection) -> None:
        cfg = engines.alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)

    return go


def index_names(conn: Connection) -> set[str]:
    inspector = sa.inspect(conn)
    return {i["name"] for t in INDEXES for i in inspector.get_indexes(t) if i["name"]}


async def test_0015_applies_reverts_and_applies_again(empty_url: str) -> None:
    store = SqlRecordStore.from_url(empty_url)
    try:
        await store.migrate()
        async with store._engine.begin() as conn:
            assert set(INDEXES.values()) <= await conn.run_sync(index_names)
            await conn.run_sync(downgrade_to("0014"))  # type: ignore[arg-type]
            assert not set(INDEXES.values()) & await conn.run_sync(index_names)
            await conn.run_sync(upgrade_to("0015"))  # type: ignore[arg-type]
            assert set(INDEXES.values()) <= await conn.run_sync(index_names)
    finally:
        await store.close()


@pytest.mark.parametrize("table", PRUNED)
async def test_the_sweeps_select_uses_its_index(empty_url: str, table: str) -> None:
    store = SqlRecordStore.from_url(empty_url)
    try:
        await store.migrate()
        async with store._engine.begin() as conn:
            sql = old_rows(table, "acme", BEFORE).compile(
                dialect=conn.dialect, compile_kwargs={"literal_binds": True}
            )
            if conn.dialect.name == "sqlite":
                explain = "EXPLAIN QUERY PLAN "
            else:  # an empty table: make the planner show the index it would take
                explain = "EXPLAIN "
                await conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
            plan = " ".join(str(r[-1]) for r in await conn.execute(sa.text(explain + str(sql))))
        assert INDEXES[table] in plan, plan
    finally:
        await store.close()
