"""The harness reads the records of the store a server was given (SQLite in its home, or
PostgreSQL), by status and by kind of run; a store without tables yet holds nothing."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bench.records import Records, fresh_database

TABLES = [
    "CREATE TABLE runs (id TEXT, status TEXT, session_id TEXT, task_id TEXT)",
    "CREATE TABLE tasks (id TEXT, status TEXT)",
]
ROWS = [
    "INSERT INTO runs VALUES ('a', 'succeeded', NULL, NULL), ('b', 'succeeded', NULL, NULL), "
    "('c', 'failed', NULL, NULL), ('d', 'succeeded', 's1', NULL), ('e', 'succeeded', NULL, 't1')",
    "INSERT INTO tasks VALUES ('t1', 'succeeded'), ('t2', 'queued')",
]


async def _expect_counts(records: Records) -> None:
    assert await records.runs("invoke") == {"succeeded": 2, "failed": 1}
    assert await records.runs("turn") == {"succeeded": 1}
    assert await records.tasks() == {"succeeded": 1, "queued": 1}
    assert await records.fetch("SELECT COUNT(*) FROM tasks WHERE id != ?", "t1") == [(1,)]


async def test_sqlite_records_in_the_home(tmp_path: Path) -> None:
    records = Records(tmp_path)
    assert await records.tasks() == {}  # no file yet
    with contextlib.closing(sqlite3.connect(tmp_path / "shipyard.db")) as db:
        assert await records.runs("invoke") == {}  # a file without tables
        for sql in TABLES + ROWS:
            db.execute(sql)
        db.commit()
    await _expect_counts(records)


def own_database(postgres_url: str, suffix: str) -> str:
    """A database of the test's own beside the session's (whose tables the other tests use:
    these tests make toy ``runs`` and ``tasks`` tables); dropped by ``drop_own``."""
    base, name = postgres_url.rsplit("/", 1)
    return f"{base}/{name}_{suffix}"


@pytest.fixture
async def drop_own(postgres_url: str) -> AsyncIterator[None]:
    yield
    base, name = postgres_url.rsplit("/", 1)
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        for suffix in ("records", "fresh"):
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}_{suffix}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_postgres_records(postgres_url: str, drop_own: None) -> None:
    url = own_database(postgres_url, "records")
    await fresh_database(url)
    records = Records(Path("/nonexistent"), url)
    conn = await asyncpg.connect(url)
    try:
        assert await records.tasks() == {}
        for sql in TABLES + ROWS:
            await conn.execute(sql)
    finally:
        await conn.close()
    await _expect_counts(records)


@pytest.mark.postgres
async def test_each_point_starts_from_an_empty_database(postgres_url: str, drop_own: None) -> None:
    url = own_database(postgres_url, "fresh")
    await fresh_database(url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(TABLES[1])
        await conn.execute(ROWS[1])
    finally:
        await conn.close()
    await fresh_database(url)
    assert await Records(Path("/nonexistent"), url).tasks() == {}
    with pytest.raises(ValueError, match="refusing"):
        await fresh_database(f"{url.rsplit('/', 1)[0]}/postgres")
