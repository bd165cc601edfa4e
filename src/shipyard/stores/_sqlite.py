"""What every SQLite-backed store does the same way: open a connection, run a write transaction.

Connections are in autocommit mode, with transactions explicit (``BEGIN IMMEDIATE`` takes the
write lock up front, so a transaction never fails half way for want of it), in WAL mode.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Literal


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
