"""Write transactions of the record store: group-committed (``stores._group_commit``), and on
a SQLite file run on the event loop (``LoopFirst``).

- PostgreSQL: every small transaction is four round trips and a WAL flush at commit; with a
  server and workers each running a dozen at once, PostgreSQL spent a core on them (end to end
  with two workers: 178 tasks/s; with group commit: 418).
- SQLite has one writer at a time per file, and a process's pooled connections racing for it
  meet SQLite's busy handler, which sleeps up to 100 ms between tries: under load most of the
  wait was sleep while the lock was free.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import StaticPool

from shipyard.stores._sqlite import is_locked, when_unlocked
from shipyard.stores.records import engines
from shipyard.stores.records.sqlite_prepared import Prepared

T = TypeVar("T")

CHECKPOINT_EVERY_S = 1.0
"""How often a SQLite file's WAL is checkpointed (PASSIVE, off the loop) at most."""


class LoopFirst:
    """Write transactions for a SQLite file, on the event loop through the stdlib driver.

    Through aiosqlite every statement is a hop to its thread and back (a self-pipe wake-up of the
    loop); measured on ``POST /v1/tasks``, half the server's samples were there. In WAL mode with
    ``synchronous=NORMAL`` a commit is a write to the log, not an fsync, so a transaction whose
    ``BEGIN IMMEDIATE`` got the lock runs right on the loop (a writer thread lost more to GIL
    contention than it saved on two cores). The statements and types are SQLAlchemy's, through
    a synchronous engine on the same file; the hot ones, registered with ``prepare``, run on
    the stdlib driver directly (``Prepared``).

    The writer's connection never checkpoints the WAL (with ``synchronous=NORMAL`` a checkpoint
    fsyncs the database file, which would stall the loop for as long as the disk takes): after a
    commit, a PASSIVE checkpoint runs on a thread, on a connection of its own, at most every
    ``CHECKPOINT_EVERY_S``; it never blocks the writer.
    """

    def __init__(self, path: str) -> None:
        self._sync = sa.create_engine(
            f"sqlite:///{path}",
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            json_serializer=engines.json_dumps,
            json_deserializer=engines.json_loads,
        )
        event.listen(self._sync, "connect", _on_connect)
        self._prepared: dict[int, tuple[Any, Prepared]] = {}
        self._conn: sa.Connection | None = None
        self._path = path
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="shipyard-checkpoint")
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint: Future[None] | None = None
        self._last_checkpoint = time.monotonic()
        self._closed = False

    def prepare(self, statement: Any, **options: Any) -> None:
        """Run ``statement`` (given one set of parameters) on the stdlib driver from now on;
        ``options`` as for ``Prepared``."""
        prepared = Prepared(statement, self._sync.dialect, **options)
        self._prepared[id(statement)] = (statement, prepared)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        conn = await self._lock_file()
        try:
            transaction = conn.begin()  # SQLAlchemy's bookkeeping: pysqlite sends nothing for it
            yield cast(AsyncConnection, _OnLoop(conn, self._prepared))
            transaction.commit()
        except BaseException:
            _reset(conn)  # whatever failed, COMMIT included: nothing stays open, no lock held
            raise
        self._maybe_checkpoint()

    async def _lock_file(self) -> sa.Connection:
        """The file's write lock (see ``when_unlocked``), on a connection in its transaction."""
        return await when_unlocked(self._locked_now, engines.SQLITE_BUSY_TIMEOUT_MS / 1000)

    def _locked_now(self) -> sa.Connection | None:
        """``BEGIN IMMEDIATE`` straight on the driver (tried every ~1 ms under contention: through
        SQLAlchemy, a checkout and an execution each time)."""
        if self._closed:
            raise sqlite3.ProgrammingError("the record store is closed")
        if self._conn is None or self._conn.invalidated or self._conn.closed:
            self._conn = self._sync.connect()
        try:
            _driver(self._conn).execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if is_locked(error):
                return None
            raise
        return self._conn

    def _maybe_checkpoint(self) -> None:
        """After a commit; never fails the write that triggered it."""
        now = time.monotonic()
        if now - self._last_checkpoint < CHECKPOINT_EVERY_S:
            return
        if self._checkpoint is not None and not self._checkpoint.done():
            return
        self._last_checkpoint = now
        with contextlib.suppress(RuntimeError):  # the store is closing
            self._checkpoint = self._thread.submit(self._run_checkpoint)

    def _run_checkpoint(self) -> None:
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(self._path, isolation_level=None)
            engines.sqlite_pragmas(self._checkpointer)
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._sync.dispose()

        def shut() -> None:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None

        self._thread.submit(shut).result()
        self._thread.shutdown(wait=True)


def _driver(conn: sa.Connection) -> Any:
    """The stdlib ``sqlite3.Connection`` under ``conn``."""
    return conn.connection.dbapi_connection


def _reset(conn: sa.Connection) -> None:
    """Out of any transaction, in SQLAlchemy's books and on the driver. After a failed COMMIT
    SQLAlchemy keeps the transaction, inactive, until a rollback; the driver may still hold
    the file's write lock."""
    with contextlib.suppress(Exception):
        conn.rollback()
    with contextlib.suppress(Exception):
        if _driver(conn).in_transaction:
            _driver(conn).execute("ROLLBACK")


class _OnLoop:
    """A synchronous connection behind the two methods the store's writes use."""

    def __init__(self, conn: sa.Connection, prepared: dict[int, tuple[Any, Prepared]]) -> None:
        self._conn = conn
        self._prepared = prepared

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        found = self._prepared.get(id(statement))
        if found is None:
            return self._conn.execute(statement, parameters)
        driver = _driver(self._conn)
        if isinstance(parameters, Mapping):
            return found[1].execute(driver, parameters)
        return found[1].executemany(driver, parameters)

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(self._conn, *args)


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    engines.sqlite_pragmas(dbapi_connection, busy_timeout_ms=0)  # never wait on the loop
    dbapi_connection.execute("PRAGMA wal_autocheckpoint = 0")  # see LoopFirst
    dbapi_connection.isolation_level = None  # transactions are ours: BEGIN IMMEDIATE
