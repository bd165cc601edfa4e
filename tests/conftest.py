"""Shared fixtures: real services, skipped with the reason when missing (failed under
``SHIPYARD_REQUIRE_SERVICES=1``, which ``make test`` sets)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator

import asyncpg
import pytest

from shipyard.telemetry.logging import configure_logging


def pytest_configure(config: pytest.Config) -> None:
    """Tests log as the processes do (``shipyard`` configures this at start)."""
    configure_logging("warning")


POSTGRES_ADMIN_URL = os.environ.get(
    "SHIPYARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def missing_service(reason: str) -> None:
    if os.environ.get("SHIPYARD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (SHIPYARD_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


async def admin_sql(sql: str, admin_url: str = POSTGRES_ADMIN_URL) -> None:
    conn = await asyncpg.connect(admin_url, timeout=3)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def fresh_database(admin_url: str, prefix: str, service: str) -> Iterator[str]:
    """A fresh database on ``admin_url``'s server, dropped when the caller's fixture ends;
    skips (fails under SHIPYARD_REQUIRE_SERVICES=1) when ``service`` is unreachable."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    try:
        asyncio.run(admin_sql(f'CREATE DATABASE "{name}"', admin_url))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        missing_service(f"{service} unreachable at {admin_url}: {exc!r}")
    yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', admin_url))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for the session, dropped at the end."""
    yield from fresh_database(POSTGRES_ADMIN_URL, "shipyard_test", "PostgreSQL")
