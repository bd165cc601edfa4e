"""Fixtures for the record store contract: one ``store`` per backend (SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from shipyard.stores.records.sql import SqlRecordStore

TABLES = ", ".join(
    [
        *("run_events", "runs", "sessions", "task_transitions", "tasks", "api_keys"),
        *("tenants", "tenant_policy_changes", "workers", "webhook_deliveries"),
        *("audit_log", "audit_checkpoints"),
    ]
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('records') / 'records.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def store(backend_url: str) -> AsyncIterator[SqlRecordStore]:
    """A migrated, empty store."""
    store = SqlRecordStore.from_url(backend_url)
    try:
        await store.migrate()
        if backend_url.startswith("postgresql"):
            await _truncate(backend_url)
        yield store
    finally:
        await store.close()


async def _truncate(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=3)
    try:
        await conn.execute(f"TRUNCATE {TABLES}")
    finally:
        await conn.close()
