"""Fixtures for the record store contract: one ``store`` per backend (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from shipyard.stores.records.sql import SqlRecordStore

POSTGRES_ADMIN_URL = os.environ.get(
    "SHIPYARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TABLES = "run_events, runs, api_keys, tenants"


def _missing_service(reason: str) -> None:
    if os.environ.get("SHIPYARD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (SHIPYARD_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=3)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for the session, dropped at the end."""
    name = f"shipyard_test_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        _missing_service(f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {exc!r}")
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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
