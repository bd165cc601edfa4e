"""What the parts of the SQL record store share: one engine, one write path, one error mapping.

Each sub-protocol of ``base.RecordStore`` has its own class (``keys``, ``runs``, ``sessions``,
``tasks``, ``traces``, ``workers``, ``webhooks``), all over one ``Database``:

- writes go through ``Database.write``, group-committed (``stores._group_commit``): the
  process's writes of the moment, whichever part makes them, share one transaction; on a SQLite
  file they run on the loop (``group_commit.LoopFirst``), the hot statements compiled once for
  the stdlib driver (``Database.prepare``); on PostgreSQL in the driver's transactions, the hot
  statements on ``asyncpg`` directly (``pg_prepared.AsyncpgWrites``);
- reads go through ``Database.fetch`` on the async engine, as plain dicts;
- driver and network failures leave both as ``StoreError`` (``StoreRejected`` when the store
  refused the data itself), naming the operation, never the driver, to a client;
- rows become models through ``readable`` in listings, which skips (and logs) a row an older
  version stored and that can no longer be served.

The few dialect differences (upserts, connection setup, driver exceptions) are chosen once,
from ``engine.dialect.name``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog
from pydantic import BaseModel, ValidationError
from sqlalchemy import exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shipyard.errors import StoreError, StoreRejected
from shipyard.stores._group_commit import GroupCommit
from shipyard.stores.records.base import Page
from shipyard.stores.records.group_commit import LoopFirst
from shipyard.stores.records.pg_prepared import AsyncpgWrites
from shipyard.stores.storable import value_problem

__all__ = ["MAX_PAGE", "SQLITE_COMMIT_DELAY_S", "Database", "Insert", "readable"]

log = structlog.get_logger("shipyard.stores.records.sql")  # the store's name, as before the split

MAX_PAGE = 500
SQLITE_COMMIT_DELAY_S = 0.002
"""The default commit delay (``stores._group_commit``) on a SQLite file, whose transactions run
on the loop, so that no write joins one while it runs. On PostgreSQL a transaction waits on the
network and the writes that come meanwhile join the next one: a delay there saved no worker
CPU, so none by default."""

Insert = sqlite.Insert | postgresql.Insert
_Model = TypeVar("_Model", bound=BaseModel)
_T = TypeVar("_T")

# Errors about the data, not the store's health: the same write would fail again.
_REFUSALS = (
    exc.DataError,
    exc.IntegrityError,
    sqlite3.DataError,
    sqlite3.IntegrityError,
    UnicodeEncodeError,  # a lone surrogate, which the stdlib driver cannot encode
)


class Database:
    """An async SQLAlchemy engine (``aiosqlite`` or ``asyncpg``) and its group-committed writes."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        driver_errors: tuple[type[Exception], ...] = (),
        sqlite_path: str | None = None,
        commit_delay_s: float | None = None,
    ) -> None:
        """``sqlite_path``: the SQLite file, whose writes then run on the loop (``LoopFirst``).
        ``commit_delay_s``: see ``stores._group_commit``; ``None`` is the backend's default
        (``SQLITE_COMMIT_DELAY_S`` on a SQLite file, none on PostgreSQL)."""
        self.engine = engine
        self.dialect = engine.dialect.name
        self.writes_in_ctes = self.dialect == "postgresql"
        """Whether a statement can write in its ``WITH`` clauses (a row and its log in one
        statement: one round trip)."""
        self.array_params = self.dialect == "postgresql"
        """Whether a list can be one parameter (``= ANY(:ids)``: one prepared statement for
        any number of ids, where ``IN`` is rendered again for each)."""
        self._loop_first = LoopFirst(sqlite_path) if sqlite_path else None
        self._asyncpg = AsyncpgWrites(engine) if self.dialect == "postgresql" else None
        begin = self.engine.begin
        if self._loop_first is not None:
            begin = self._loop_first.begin
        elif self._asyncpg is not None:
            begin = self._asyncpg.begin
        if commit_delay_s is None:
            commit_delay_s = SQLITE_COMMIT_DELAY_S if self._loop_first else 0.0
        self._group = GroupCommit(begin, delay_s=commit_delay_s)
        self._errors: tuple[type[Exception], ...] = (
            exc.DBAPIError,
            exc.TimeoutError,
            OSError,
            UnicodeEncodeError,
            *driver_errors,
        )

    def insert(self, table: sa.Table) -> Insert:
        """The dialect's ``INSERT`` that knows ``ON CONFLICT``."""
        return postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table)

    def prepare(self, statement: Any, **options: Any) -> None:
        """Run ``statement`` in writes on the driver, compiled once (``options`` as for
        ``sqlite_prepared.Prepared``): on a SQLite file the stdlib driver (``LoopFirst``), on
        PostgreSQL ``asyncpg`` (``AsyncpgWrites``); on an in-memory SQLite, nothing."""
        if self._loop_first is not None:
            self._loop_first.prepare(statement, **options)
        elif self._asyncpg is not None:
            self._asyncpg.prepare(statement, **options)

    @asynccontextmanager
    async def translate(self, operation: str) -> AsyncIterator[None]:
        """Driver and network failures leave as ``StoreError``; the message, for the log, names
        the driver's exception; a client sees only the operation (``StoreError.to_dict``)."""
        try:
            yield
        except self._errors as e:
            message = f"record store ({self.dialect}) {operation} failed: {_driver_error(e)}"
            error = StoreRejected if _refused(e) else StoreError
            raise error(message, details={"operation": operation}) from e

    async def write(self, operation: str, work: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
        """``work`` in a write transaction, together with the process's other writes of the
        moment (``GroupCommit``)."""
        async with self.translate(operation):
            return await self._group.run(work)

    async def fetch(self, operation: str, query: sa.Select[Any]) -> list[dict[str, Any]]:
        async with self.translate(operation), self.engine.connect() as conn:
            result = await conn.execute(query)
            return [dict(row) for row in result.mappings()]

    async def fetch_tuples(self, operation: str, query: sa.Select[Any]) -> list[tuple[Any, ...]]:
        """Rows as tuples: cheaper than ``fetch``'s dicts when there are many (tens of
        thousands: the overview's runs)."""
        async with self.translate(operation), self.engine.connect() as conn:
            result = await conn.execute(query)
            return [tuple(row) for row in result.all()]

    async def page(
        self,
        operation: str,
        query: sa.Select[Any],
        key: sa.Column[Any],
        model: type[_Model],
        limit: int,
        cursor: str | None,
    ) -> Page[_Model]:
        """Keyset pagination, newest first on a time-ordered id (the cursor is the last id of
        the previous page); ``limit`` clamped to 1..``MAX_PAGE``; one extra row tells if more."""
        limit = min(max(limit, 1), MAX_PAGE)
        if cursor:
            query = query.where(key < cursor)
        rows = await self.fetch(operation, query.order_by(key.desc()).limit(limit + 1))
        items = readable(operation, model, rows[:limit])
        last = rows[limit - 1][key.name] if len(rows) > limit else None
        return Page[_Model](items=items, next_cursor=last)

    async def close(self) -> None:
        if self._asyncpg is not None:
            await self._asyncpg.close()
        await self.engine.dispose()
        if self._loop_first is not None:
            self._loop_first.close()


def readable(operation: str, model: type[_Model], rows: list[dict[str, Any]]) -> list[_Model]:
    """The rows as ``model``s, but for those that could not be served (an older version stored
    what the API now refuses: a lone surrogate, NUL, nesting the serialiser cannot take, or a
    shape that no longer validates): those are skipped, and logged, and the listing goes on."""
    items = []
    for row in rows:
        problem = value_problem(row)
        if problem is None:
            try:
                items.append(model.model_validate(row))
                continue
            except ValidationError as e:
                problem = (str(e.errors()[0]["loc"]), e.errors()[0]["msg"])
        where, reason = problem
        ident = row.get("id") or f"{row.get('run_id')}/{row.get('seq')}"
        log.error(
            "unreadable record skipped", operation=operation, row=ident, where=where, reason=reason
        )
    return items


def _refused(error: BaseException) -> bool:
    """Whether the store refused the data itself (SQLSTATE class 22 data exception or 23
    integrity violation), so that retrying the same write cannot succeed."""
    if isinstance(error, _REFUSALS):
        return True
    sqlstate = getattr(getattr(error, "orig", error), "sqlstate", None) or ""
    return str(sqlstate)[:2] in ("22", "23")


def _driver_error(error: BaseException) -> str:
    """The name of the driver's own exception, under SQLAlchemy's wrappers (no message: it may
    carry SQL or data; the full chain stays on ``__cause__`` for the logs)."""
    orig = getattr(error, "orig", None) or error
    if type(orig).__module__.startswith("sqlalchemy") and orig.__cause__ is not None:
        orig = orig.__cause__
    return type(orig).__name__
