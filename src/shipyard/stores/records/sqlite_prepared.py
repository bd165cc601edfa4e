"""SQLAlchemy statements compiled once and run on the stdlib ``sqlite3`` driver (``Prepared``
also compiles them for ``asyncpg``: ``pg_prepared``).

The hot writes (a task submitted, a task's every move, a run's batch) are a handful of fixed
statements. Going through ``Connection.execute`` for each costs more than SQLite takes to run it
(parameter processing, the execution context, result metadata: ~50 µs a statement here), so the
store compiles those statements once and keeps what the driver needs: the SQL text, where each
positional value comes from, and the column types' conversions (JSON, UTC datetimes) — the same
SQLAlchemy types as everywhere else, so what is written is exactly what the async engine reads.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler

Params = Mapping[str, Any]
_Convert = Callable[[Any], Any]


class Prepared:
    """One statement, compiled for ``dialect`` (SQLite's ``qmark`` parameters, or asyncpg's
    ``$n``).

    ``keys``: the parameters every call passes (for an INSERT, the columns it sets; by default
    all of them). ``returning``: the columns the statement returns, whose types convert what is
    read back. A statement SQLAlchemy would render again per call (expanding ``IN``), or that
    needs a value no call passes (a Python-side column default), is refused.
    """

    def __init__(
        self,
        stmt: sa.ClauseElement,
        dialect: Dialect,
        *,
        keys: Collection[str] | None = None,
        returning: Sequence[sa.ColumnElement[Any]] = (),
    ) -> None:
        compiled = cast(
            SQLCompiler,
            stmt.compile(dialect=dialect, column_keys=None if keys is None else list(keys)),
        )
        if compiled.post_compile_params or compiled.literal_execute_params:
            raise ValueError("a statement with per-call parameters (IN lists) cannot be prepared")
        self.sql = compiled.string
        self._names: list[str] = []
        self._constants: dict[int, Any] = {}
        self._convert: list[tuple[int, _Convert]] = []
        for i, name in enumerate(compiled.positiontup or ()):
            bind = compiled.binds[name]
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            self._names.append(name)
            if not bind.required and bind.value is not None:  # a literal in the statement
                self._constants[i] = proc(bind.value) if proc else bind.value
                continue
            if keys is not None and name not in keys:
                raise ValueError(f"{name!r} is in the statement but not among the keys")
            if proc is not None:
                self._convert.append((i, proc))
        self._reads = {
            c.key: c.type.dialect_impl(dialect).result_processor(dialect, _coltype(c, dialect))
            for c in returning
        }

    def values(self, params: Params) -> list[Any]:
        """The driver's positional values for ``params``."""
        constants = self._constants
        values = [
            constants[i] if i in constants else params[name] for i, name in enumerate(self._names)
        ]
        for i, proc in self._convert:
            values[i] = proc(values[i])
        return values

    def read(self, names: Iterable[str], row: Iterable[Any]) -> dict[str, Any]:
        """A returned row, converted by its columns' types."""
        reads = self._reads
        return {
            name: value if (proc := reads.get(name)) is None else proc(value)
            for name, value in zip(names, row, strict=True)
        }

    def execute(self, conn: Any, params: Params) -> PreparedResult:
        """On ``conn``, a ``sqlite3.Connection`` (typed loosely: SQLAlchemy hands out the driver's
        connection as a protocol)."""
        cursor = conn.execute(self.sql, self.values(params))
        if not self._reads:
            return PreparedResult(cursor.rowcount, [])
        names = [d[0] for d in cursor.description]
        rows = [self.read(names, row) for row in cursor.fetchall()]
        return PreparedResult(len(rows), rows)

    def executemany(self, conn: Any, rows: Sequence[Params]) -> PreparedResult:
        """Many rows (no results)."""
        cursor = conn.executemany(self.sql, [self.values(row) for row in rows])
        return PreparedResult(cursor.rowcount, [])


_PG_FLOAT8 = 701


def _coltype(column: sa.ColumnElement[Any], dialect: Dialect) -> int | None:
    """The type code the driver reports for ``column``, where its conversion depends on it:
    asyncpg's numerics ask for the PostgreSQL type (a ``Float`` column is double precision)."""
    if dialect.name == "postgresql" and isinstance(column.type, sa.Float):
        return _PG_FLOAT8
    return None


class PreparedResult:
    """The part of SQLAlchemy's result the store's writes use."""

    def __init__(self, rowcount: int, rows: list[dict[str, Any]]) -> None:
        self.rowcount = rowcount
        self._rows = rows

    def mappings(self) -> PreparedResult:
        return self

    def first(self) -> dict[str, Any] | None:
        return self._rows[0] if self._rows else None

    def all(self) -> list[dict[str, Any]]:
        return self._rows
