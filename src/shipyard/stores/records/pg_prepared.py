"""Write transactions on PostgreSQL: the hot statements straight on ``asyncpg``.

The hot writes (a task submitted, a task's every move, a run's batch) are a handful of fixed
statements. Through SQLAlchemy's ``AsyncConnection.execute`` each one costs parameter
processing, an execution context, result metadata and a greenlet switch per driver call — more
CPU than the statement costs on the server. So, as on a SQLite file (``sqlite_prepared``), those
statements are compiled once (``Prepared``: SQL text, where each positional value comes from,
the column types' conversions) and run on the driver: ``asyncpg`` prepares each text once per
connection and keeps it in its statement cache, so a call is one Bind/Execute; a batch of rows
is one ``executemany`` (pipelined, one round trip), or one ``fetchmany`` where each
execution returns rows (the moves of many tasks).

A write transaction is the driver's (``asyncpg``'s ``BEGIN``/``COMMIT``) on a connection of the
engine's pool, which SQLAlchemy holds in ``AUTOCOMMIT``: the statements that are not prepared
(the cold writes, migrations) still go through SQLAlchemy, on the same connection, inside the
same transaction, and SQLAlchemy never begins or commits one of its own there.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shipyard.stores.records.sqlite_prepared import Params, Prepared, PreparedResult

__all__ = ["AsyncpgPrepared", "AsyncpgWrites"]

T = TypeVar("T")


class AsyncpgPrepared:
    """One statement compiled for the ``asyncpg`` dialect (``$n`` parameters, each with its
    cast), run on an ``asyncpg.Connection`` (typed loosely: the driver ships no types)."""

    def __init__(self, stmt: Any, compiled: Prepared, *, returns: bool) -> None:
        self.stmt = stmt
        self._compiled = compiled
        self._returns = returns

    async def execute(self, conn: Any, params: Params) -> PreparedResult:
        values = self._compiled.values(params)
        if not self._returns:
            return PreparedResult(_rowcount(await conn.execute(self._compiled.sql, *values)), [])
        records = await conn.fetch(self._compiled.sql, *values)
        rows = [self._compiled.read(record.keys(), record.values()) for record in records]
        return PreparedResult(len(rows), rows)

    async def executemany(self, conn: Any, rows: Sequence[Params]) -> PreparedResult:
        """Many rows in one pipelined round trip; with ``returning``, the rows every execution
        returned, in order (``mappings().all()``)."""
        values = [self._compiled.values(row) for row in rows]
        if not self._returns:
            await conn.executemany(self._compiled.sql, values)
            return PreparedResult(len(rows), [])
        records = await conn.fetchmany(self._compiled.sql, values)
        read = self._compiled.read
        returned = [read(record.keys(), record.values()) for record in records]
        return PreparedResult(len(rows), returned)


class AsyncpgWrites:
    """The ``begin`` of the record store's group commit on PostgreSQL (module docstring).

    The group commit runs one transaction at a time, so the writer keeps one connection out of
    the pool from one transaction to the next (a checkout through SQLAlchemy cost ~3 times
    asyncpg's ``BEGIN`` and ``COMMIT`` together), until it may be broken (``_sound``) or the
    store closes.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._dialect = engine.dialect
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._prepared: dict[int, AsyncpgPrepared] = {}
        self._held: tuple[AsyncConnection, Any] | None = None  # and its driver connection

    def prepare(self, statement: Any, *, returning: Sequence[Any] = (), **options: Any) -> None:
        """Run ``statement`` on the driver from now on; ``options`` as for ``Prepared``."""
        compiled = Prepared(statement, self._dialect, returning=returning, **options)
        self._prepared[id(statement)] = AsyncpgPrepared(
            statement, compiled, returns=bool(returning)
        )

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        conn, driver = self._held or await self._checkout()
        try:
            async with driver.transaction():
                yield cast(AsyncConnection, _OnDriver(conn, driver, self._prepared))
        except BaseException as error:
            if not _sound(driver, error):
                self._held = None
                with contextlib.suppress(Exception):
                    await conn.invalidate()  # not handed to the pool again
            raise
        finally:
            if self._held is not None and conn.in_transaction():
                await conn.rollback()  # SQLAlchemy's books only: the driver commits (AUTOCOMMIT)

    async def _checkout(self) -> tuple[AsyncConnection, Any]:
        conn = await self._engine.connect()
        try:
            driver: Any = (await conn.get_raw_connection()).driver_connection
        except BaseException:
            await conn.close()
            raise
        self._held = (conn, driver)
        return self._held

    async def close(self) -> None:
        """Hand the writer's connection back (before the engine is disposed of)."""
        held, self._held = self._held, None
        if held is not None:
            with contextlib.suppress(Exception):
                await held[0].close()


def _sound(driver: Any, error: BaseException) -> bool:
    """Whether the connection is known to be sound after ``error``: SQLAlchemy only notices a
    broken connection when an error passes through it, and the driver's errors here did not.
    Only an error the server reported about a statement (it has a SQLSTATE) leaves a connection
    known to be sound; a connection lost, in an unknown protocol state (a server that ended it
    while it was idle), interrupted (cancelled) or still in a transaction is not."""
    reported = bool(getattr(error, "sqlstate", None))
    return reported and not driver.is_closed() and not driver.is_in_transaction()


class _OnDriver:
    """A pooled connection behind the methods the store's writes use: the prepared statements
    on the driver, any other through SQLAlchemy."""

    def __init__(
        self, conn: AsyncConnection, driver: Any, prepared: dict[int, AsyncpgPrepared]
    ) -> None:
        self._conn = conn
        self._driver = driver
        self._prepared = prepared

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        found = self._prepared.get(id(statement))
        if found is None or found.stmt is not statement:
            return await self._conn.execute(statement, parameters)
        if isinstance(parameters, Mapping):
            return await found.execute(self._driver, parameters)
        return await found.executemany(self._driver, parameters)

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._conn.run_sync(fn, *args)


def _rowcount(status: str) -> int:
    """The rows a command touched, from its status (``INSERT 0 1``, ``UPDATE 3``)."""
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else -1
