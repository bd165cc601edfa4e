"""The SQLite writer on the loop (``LoopFirst``): whatever fails inside a transaction, its
COMMIT included, the connection is left out of any transaction and the file's write lock is
released, so the next write — of this process or another — goes through."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa

from shipyard.stores.records.group_commit import LoopFirst


@pytest.fixture
def path(tmp_path: Path) -> Iterator[str]:
    file = str(tmp_path / "w.db")
    with closing(sqlite3.connect(file, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        # checked at COMMIT: a transaction that breaks it fails there
        conn.execute(
            "CREATE TABLE child (pid INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )
        conn.execute("CREATE TABLE t (x INTEGER)")
    yield file


def rows(path: str) -> list[int]:
    with closing(sqlite3.connect(path)) as conn:
        return [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x")]


def another_process_writes(path: str, x: int) -> None:
    with closing(sqlite3.connect(path, isolation_level=None, timeout=1)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?)", (x,))
        conn.execute("COMMIT")


async def test_a_failed_commit_leaves_nothing_open(path: str) -> None:
    writer = LoopFirst(path)
    try:
        with pytest.raises(sa.exc.IntegrityError):
            async with writer.begin() as conn:
                await conn.execute(sa.text("INSERT INTO child VALUES (42)"))  # no parent 42
        async with writer.begin() as conn:
            await conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        another_process_writes(path, 2)  # the lock was released
        async with writer.begin() as conn:
            await conn.execute(sa.text("INSERT INTO t VALUES (3)"))
    finally:
        writer.close()
    assert rows(path) == [1, 2, 3]


async def test_a_failed_statement_rolls_back_and_releases_the_lock(path: str) -> None:
    writer = LoopFirst(path)
    try:
        with pytest.raises(sa.exc.OperationalError):
            async with writer.begin() as conn:
                await conn.execute(sa.text("INSERT INTO t VALUES (1)"))
                await conn.execute(sa.text("INSERT INTO nowhere VALUES (1)"))
        another_process_writes(path, 2)
        async with writer.begin() as conn:
            await conn.execute(sa.text("INSERT INTO t VALUES (3)"))
    finally:
        writer.close()
    assert rows(path) == [2, 3]  # the failed transaction's 1 is gone


async def test_no_write_after_close(path: str) -> None:
    writer = LoopFirst(path)
    writer.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        async with writer.begin():
            pass
    assert rows(path) == []
