"""The harness reads the records of the store a server was given (SQLite in its home, or
PostgreSQL), by status and by kind of run; a store without tables yet holds nothing."""

from __future__ import annotations

import contextlib
import sqlite3
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


@pytest.mark.postgres
async def test_postgres_records(postgres_url: str) -> None:
    records = Records(Path("/nonexistent"), postgres_url)
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute("DROP TABLE IF EXISTS runs, tasks")
        assert await records.tasks() == {}
        for sql in TABLES + ROWS:
            await conn.execute(sql)
    finally:
        await conn.close()
    await _expect_counts(records)


@pytest.mark.postgres
async def test_each_point_starts_from_an_empty_database(postgres_url: str) -> None:
    base = postgres_url.rsplit("/", 1)[0]
    url = f"{base}/{postgres_url.rsplit('/', 1)[1]}_fresh"
    await fresh_database(url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(TABLES[1])
        await conn.execute(ROWS[1])
    finally:
        await conn.close()
    await fresh_database(url)
    assert await Records(Path("/nonexistent"), url).tasks() == {}
    admin = await asyncpg.connect(f"{base}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()
    with pytest.raises(ValueError, match="refusing"):
        await fresh_database(f"{base}/postgres")
