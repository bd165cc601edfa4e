"""Batch writes to SQLite through the stdlib driver on a thread of their own.

Recording is on the hot path of every run. Through the async engine a small batch costs a thread
hop per statement; through SQLAlchemy's sync engine it still costs more than the commit itself.
Here a batch is one hop and three driver calls. The SQL text and the value conversions (JSON,
UTC datetimes) come from the same SQLAlchemy statements and column types as everywhere else, so
what is written is exactly what the async engine reads back.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import Insert

Row = Mapping[str, Any]


class _Prepared:
    """An INSERT compiled once: its SQL, and a function turning a row dict into driver values."""

    def __init__(self, stmt: Insert, table: sa.Table, dialect: Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)
        self.sql = compiled.string
        names = list(compiled.positiontup or ())
        procs = [table.c[name].type.bind_processor(dialect) for name in names]
        self._plan: list[tuple[str, Callable[[Any], Any] | None]] = list(
            zip(names, procs, strict=True)
        )

    def values(self, row: Row) -> tuple[Any, ...]:
        return tuple(proc(row.get(name)) if proc else row.get(name) for name, proc in self._plan)


class SqliteBatchWriter:
    """Runs ``(statement, rows)`` pairs in one transaction on a dedicated connection and thread."""

    def __init__(
        self,
        path: str,
        dialect: Dialect,
        statements: Sequence[tuple[Insert, sa.Table]],
        on_connect: Callable[[sqlite3.Connection], None],
    ) -> None:
        self._path = path
        self._prepared = [_Prepared(stmt, table, dialect) for stmt, table in statements]
        self._on_connect = on_connect
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="shipyard-records")
        self._conn: sqlite3.Connection | None = None

    async def write(self, *row_sets: Sequence[Row]) -> None:
        """``row_sets[i]`` goes through ``statements[i]``; all of it commits, or none of it."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._write, row_sets)

    def _write(self, row_sets: Sequence[Sequence[Row]]) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for prepared, rows in zip(self._prepared, row_sets, strict=True):
                if rows:
                    conn.executemany(prepared.sql, [prepared.values(r) for r in rows])
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            self._on_connect(conn)
            self._conn = conn
        return self._conn

    def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._thread.submit(shut).result()
        self._thread.shutdown(wait=True)
