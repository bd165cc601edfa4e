"""Batch writes to SQLite through the stdlib driver, on the event loop when the lock is free.

Recording is on the hot path of every run. Through the async engine a small batch costs a thread
hop per statement. Measured on two cores, even one hop per batch costs more than it saves: the
writer thread and the event loop fight over the GIL, and throughput drops by ~15%. In WAL mode
with ``synchronous=NORMAL`` a commit is a write to the log, not an fsync, so a batch is written
right on the loop, and the loop never blocks on the lock: while another process holds it (a
worker, a CLI command, a second server), it is tried again about every millisecond.

The statements are SQLAlchemy's, compiled once for the driver (``sqlite_prepared``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import Insert

from shipyard.stores._sqlite import is_locked, transaction, when_unlocked
from shipyard.stores.records.sqlite_prepared import Prepared

Row = Mapping[str, Any]


CHECKPOINT_EVERY_S = 1.0


class SqliteBatchWriter:
    """Runs ``(statement, rows)`` pairs in one transaction on a dedicated connection.

    The writer's own connection never checkpoints the WAL (with ``synchronous=NORMAL`` a
    checkpoint fsyncs the database file, which would stall the event loop for as long as the
    disk takes). A PASSIVE checkpoint runs on the thread, on a connection of its own, at most
    every ``CHECKPOINT_EVERY_S``; it never blocks the writer.
    """

    def __init__(
        self,
        path: str,
        dialect: Dialect,
        statements: Sequence[Insert],
        on_connect: Callable[[sqlite3.Connection], None],
        busy_timeout_ms: int = 5_000,
    ) -> None:
        self._busy_timeout_ms = busy_timeout_ms
        self._path = path
        self._prepared = [Prepared(stmt, dialect) for stmt in statements]
        self._on_connect = on_connect
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="shipyard-records")
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint: Future[None] | None = None
        self._last_checkpoint = time.monotonic()

    async def write(self, *row_sets: Sequence[Row]) -> None:
        """``row_sets[i]`` goes through ``statements[i]``; all of it commits, or none of it.
        While another process holds the write lock, see ``when_unlocked``."""
        await when_unlocked(lambda: self._try_now(row_sets), self._busy_timeout_ms / 1000)
        self._maybe_checkpoint()

    def _maybe_checkpoint(self) -> None:
        now = time.monotonic()
        if now - self._last_checkpoint < CHECKPOINT_EVERY_S:
            return
        if self._checkpoint is not None and not self._checkpoint.done():
            return
        self._last_checkpoint = now
        self._checkpoint = self._thread.submit(self._run_checkpoint)

    def _run_checkpoint(self) -> None:
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(self._path, isolation_level=None)
            self._on_connect(self._checkpointer)
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _try_now(self, row_sets: Sequence[Sequence[Row]]) -> bool | None:
        """True once written; None while the lock is held elsewhere."""
        try:
            self._write(row_sets)
        except sqlite3.OperationalError as exc:
            if is_locked(exc):
                return None
            raise
        return True

    def _write(self, row_sets: Sequence[Sequence[Row]]) -> None:
        conn = self._connection()
        with transaction(conn):
            for prepared, rows in zip(self._prepared, row_sets, strict=True):
                if rows:
                    conn.executemany(prepared.sql, [prepared.values(r) for r in rows])

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            self._on_connect(conn)
            conn.execute("PRAGMA busy_timeout = 0")  # never wait on the loop (see ``write``)
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._conn = conn
        return self._conn

    def close(self) -> None:
        def shut() -> None:
            for conn in (self._conn, self._checkpointer):
                if conn is not None:
                    conn.close()
            self._conn = self._checkpointer = None

        self._thread.submit(shut).result()
        self._thread.shutdown(wait=True)
