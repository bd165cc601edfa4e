"""Write transactions on PostgreSQL: the hot statements straight on ``asyncpg``.

The hot writes (a task submitted, a task's every move, a run's batch) are a handful of fixed
statements. Through SQLAlchemy's ``AsyncConnection.execute`` each one costs parameter
processing, an execution context, result metadata and a greenlet switch per driver call — more
CPU than the statement costs on the server. So, as on a SQLite file (``sqlite_prepared``), those
statements are compiled once (``Prepared``: SQL text, where each positional value comes from,
the column types' conversions) and run on the driver: ``asyncpg`` prepares each text once per
connection and keeps it in its statement cache, so a call is one Bind/Execute; a batch of rows
is one ``executemany`` (pipelined, one round trip).

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
        """Many rows in one pipelined round trip (no results)."""
        await conn.executemany(self._compiled.sql, [self._compiled.values(row) for row in rows])
        return PreparedResult(len(rows), [])


class AsyncpgWrites:
    """The ``begin`` of the record store's group commit on PostgreSQL (module docstring)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._dialect = engine.dialect
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._prepared: dict[int, AsyncpgPrepared] = {}

    def prepare(self, statement: Any, *, returning: Sequence[Any] = (), **options: Any) -> None:
        """Run ``statement`` on the driver from now on; ``options`` as for ``Prepared``."""
        compiled = Prepared(statement, self._dialect, returning=returning, **options)
        self._prepared[id(statement)] = AsyncpgPrepared(
            statement, compiled, returns=bool(returning)
        )

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        async with self._engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            try:
                async with driver.transaction():
                    yield cast(AsyncConnection, _OnDriver(conn, driver, self._prepared))
            except BaseException as error:
                await _drop_if_broken(conn, driver, error)
                raise


async def _drop_if_broken(conn: AsyncConnection, driver: Any, error: BaseException) -> None:
    """A connection that may be broken is not handed to the pool again: SQLAlchemy only
    notices one when an error passes through it, and the driver's errors here did not. Only an
    error the server reported about a statement (it has a SQLSTATE) leaves a connection known
    to be sound; a connection lost, in an unknown protocol state (a server that ended it while
    it was idle), interrupted (cancelled) or still in a transaction is dropped."""
    sound = getattr(error, "sqlstate", None) and not driver.is_closed()
    if not sound or driver.is_in_transaction():
        with contextlib.suppress(Exception):
            await conn.invalidate()


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
