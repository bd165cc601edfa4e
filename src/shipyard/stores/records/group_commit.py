"""Group commit for the record store's small write transactions (tasks, sessions, keys).

The writes of one process queue on the loop; while one transaction runs, the next ones gather,
and they then run together in one transaction: one commit (and on SQLite one lock acquisition)
for many task moves.

- PostgreSQL: every small transaction is four round trips and a WAL flush at commit; with a
  server and workers each running a dozen at once, PostgreSQL spent a core on them (end to end
  with two workers: 178 tasks/s; with group commit: 418).
- SQLite has one writer at a time per file, and a process's pooled connections racing for it
  meet SQLite's busy handler, which sleeps up to 100 ms between tries: under load most of the
  wait was sleep while the lock was free.

If the shared transaction fails, each write runs again in a transaction of its own, so one
write's error (a constraint, bad data, a deadlock) is its alone and the others still commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar, cast

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import StaticPool

from shipyard.stores._sqlite import is_locked, when_unlocked
from shipyard.stores.records import engines
from shipyard.stores.records.sqlite_prepared import Prepared

T = TypeVar("T")
Work = Callable[[AsyncConnection], Awaitable[Any]]

MAX_BATCH = 256
"""Writes in one shared transaction at most."""


class GroupCommit:
    def __init__(
        self,
        begin: Callable[[], AbstractAsyncContextManager[AsyncConnection]],
        lock: asyncio.Lock,
    ) -> None:
        """``begin`` opens a write transaction; ``lock`` is held while one runs (the store's
        other writer, the run batch writer, takes it too)."""
        self._begin = begin
        self._lock = lock
        self._pending: list[tuple[Work, asyncio.Future[Any]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """``work``'s result once its transaction has committed (or its error)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((work, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        batch: list[tuple[Work, asyncio.Future[Any]]] = []
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                async with self._lock:
                    try:
                        results = await self._together(batch)
                    except Exception as exc:
                        if len(batch) == 1:
                            _settle(batch[0][1], error=exc)
                        else:
                            await self._one_by_one(batch)
                        continue
                for (_, future), result in zip(batch, results, strict=True):
                    _settle(future, result)
        except BaseException as exc:  # cancelled (the loop is closing): nobody waits forever
            for _, future in [*batch, *self._pending]:
                _settle(future, error=exc)
            raise

    async def _together(self, batch: list[tuple[Work, asyncio.Future[Any]]]) -> list[Any]:
        async with self._begin() as conn:
            return [await work(conn) for work, _ in batch]

    async def _one_by_one(self, batch: list[tuple[Work, asyncio.Future[Any]]]) -> None:
        for work, future in batch:
            try:
                async with self._begin() as conn:
                    result = await work(conn)
            except Exception as exc:
                _settle(future, error=exc)
            else:
                _settle(future, result)


def _settle(
    future: asyncio.Future[Any], result: Any = None, error: BaseException | None = None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class LoopFirst:
    """Write transactions for a SQLite file, on the event loop through the stdlib driver.

    Through aiosqlite every statement is a hop to its thread and back (a self-pipe wake-up of the
    loop); measured on ``POST /v1/tasks``, half the server's samples were there. In WAL mode with
    ``synchronous=NORMAL`` a commit is a write to the log, not an fsync, so a transaction whose
    ``BEGIN IMMEDIATE`` got the lock runs right on the loop, as the run batch writer does. The
    statements and types are SQLAlchemy's, through a synchronous engine on the same file; the
    hot ones, registered with ``prepare``, run on the stdlib driver directly (``Prepared``).
    """

    def __init__(self, path: str) -> None:
        self._sync = sa.create_engine(
            f"sqlite:///{path}",
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            json_serializer=engines.json_dumps,
            json_deserializer=orjson.loads,
        )
        event.listen(self._sync, "connect", _on_connect)
        self._prepared: dict[int, tuple[Any, Prepared]] = {}
        self._conn: sa.Connection | None = None

    def prepare(self, statement: Any, **options: Any) -> None:
        """Run ``statement`` (given one set of parameters) on the stdlib driver from now on;
        ``options`` as for ``Prepared``."""
        prepared = Prepared(statement, self._sync.dialect, **options)
        self._prepared[id(statement)] = (statement, prepared)

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        conn = await self._lock_file()
        transaction = conn.begin()  # SQLAlchemy's bookkeeping: pysqlite sends nothing for it
        try:
            yield cast(AsyncConnection, _OnLoop(conn, self._prepared))
            transaction.commit()
        except BaseException:
            if transaction.is_active:
                transaction.rollback()
            raw = conn.connection.dbapi_connection
            if raw is not None and raw.in_transaction:  # a failed COMMIT: never left open
                raw.execute("ROLLBACK")
            raise

    async def _lock_file(self) -> sa.Connection:
        """The file's write lock (see ``when_unlocked``), on a connection in its transaction."""
        return await when_unlocked(self._locked_now, engines.SQLITE_BUSY_TIMEOUT_MS / 1000)

    def _locked_now(self) -> sa.Connection | None:
        """``BEGIN IMMEDIATE`` straight on the driver (tried every ~1 ms under contention: through
        SQLAlchemy, a checkout and an execution each time)."""
        if self._conn is None or self._conn.invalidated or self._conn.closed:
            self._conn = self._sync.connect()
        try:
            self._conn.connection.dbapi_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
        except sqlite3.OperationalError as error:
            if is_locked(error):
                return None
            raise
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._sync.dispose()


class _OnLoop:
    """A synchronous connection behind the two methods the store's writes use."""

    def __init__(self, conn: sa.Connection, prepared: dict[int, tuple[Any, Prepared]]) -> None:
        self._conn = conn
        self._prepared = prepared

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        found = self._prepared.get(id(statement))
        if found is not None and isinstance(parameters, Mapping):
            return found[1].execute(self._conn.connection.dbapi_connection, parameters)
        return self._conn.execute(statement, parameters)

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(self._conn, *args)


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    engines.sqlite_pragmas(dbapi_connection, busy_timeout_ms=0)  # never wait on the loop
    dbapi_connection.isolation_level = None  # transactions are ours: BEGIN IMMEDIATE
