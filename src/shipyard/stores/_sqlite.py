"""What every SQLite-backed store does the same way: open a connection, run a write transaction.

Connections are in autocommit mode, with transactions explicit (``BEGIN IMMEDIATE`` takes the
write lock up front, so a transaction never fails half way for want of it), in WAL mode.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Literal, TypeVar

T = TypeVar("T")


def connect(
    path: str,
    *,
    busy_timeout_ms: int,
    synchronous: Literal["NORMAL", "FULL"],
    schema: Iterable[str] = (),
) -> sqlite3.Connection:
    """A connection with the pragmas set and ``schema`` (``CREATE ... IF NOT EXISTS``) applied."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        with transaction(conn):
            for statement in schema:
                conn.execute(statement)
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction: committed at the end, rolled back on any error — a failed COMMIT
    included, so the connection is never left inside a transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def is_locked(error: BaseException | None) -> bool:
    """SQLite's "database is locked": another connection holds the write lock."""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


async def when_unlocked(attempt: Callable[[], T | None], timeout_s: float) -> T:
    """``attempt()`` (which returns None while another process holds the write lock) tried
    again every ~1 ms from the loop, for up to ``timeout_s``.

    SQLite's own busy handler sleeps up to 100 ms between tries: with a server and workers
    sharing one file, most of the wait was sleep while the lock was free.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (result := attempt()) is None:
        if loop.time() > deadline:
            raise sqlite3.OperationalError("database is locked")
        await asyncio.sleep(random.uniform(0.0005, 0.0015))
    return result
