"""The span role of ``SqlRecordStore``: finished spans in, a tenant's trace out.

A mixin: ``SqlRecordStore`` brings the engine, the dialect's ``INSERT`` and the error mapping,
and calls ``_init_spans`` and ``_close_spans``. Spans arrive as plain dicts, in batches the trace
store flushes a couple of times a second. On a SQLite file they go through a batch writer of
their own (the stdlib driver on the loop while the write lock is free, as the run records do;
its own connection, since the records' writer is not shared between two callers); elsewhere
through the async engine, one statement per batch.

Spans are keyed by trace id, which is random: each insert lands on a random page of the key's
index, so on SQLite a span costs more as the table grows (measured: ~6 µs in an empty table,
10-25 µs past 200k spans, checkpoints included; with time-ordered trace ids it stays ~5 µs).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from shipyard.stores.records import engines
from shipyard.stores.records.schema import spans
from shipyard.stores.records.sqlite_batch import SqliteBatchWriter
from shipyard.telemetry.spans import SpanRow

__all__ = ["SqlSpanRecords"]

MAX_SPANS = 10_000
"""The most spans one trace read returns."""

Insert = sqlite.Insert | postgresql.Insert


class _Store(Protocol):
    """What the mixin needs from the store it is mixed into."""

    _engine: AsyncEngine
    _insert_spans_stmt: Insert
    _span_batches: SqliteBatchWriter | None

    def _translate(self, operation: str) -> AbstractAsyncContextManager[None]: ...

    def _insert(self, table: sa.Table) -> Insert: ...

    async def _fetch(self, operation: str, query: sa.Select[Any]) -> list[dict[str, Any]]: ...


class SqlSpanRecords:
    """``SpanRecords`` for ``SqlRecordStore``."""

    _insert_spans_stmt: Insert
    _span_batches: SqliteBatchWriter | None

    def _init_spans(self: _Store, sqlite_path: str | None) -> None:
        stmt = self._insert(spans).on_conflict_do_nothing(index_elements=["trace_id", "span_id"])
        self._insert_spans_stmt = stmt
        self._span_batches = (
            SqliteBatchWriter(
                sqlite_path,
                self._engine.dialect,
                [(stmt, spans)],
                engines.sqlite_pragmas,
                busy_timeout_ms=engines.SQLITE_BUSY_TIMEOUT_MS,
            )
            if sqlite_path
            else None
        )

    def _close_spans(self: _Store) -> None:
        if self._span_batches is not None:
            self._span_batches.close()

    async def write_spans(self: _Store, rows: Sequence[SpanRow]) -> None:
        """Insert in one transaction, skipping ``(trace_id, span_id)`` pairs already stored."""
        if not rows:
            return
        async with self._translate("write_spans"):
            if self._span_batches is not None:
                await self._span_batches.write(rows)
                return
            async with self._engine.begin() as conn:
                await conn.execute(self._insert_spans_stmt, list(rows))

    async def get_trace(self: _Store, tenant_id: str, trace_id: str) -> list[SpanRow]:
        """The tenant's spans of the trace, by start time (at most ``MAX_SPANS``)."""
        query = (
            spans.select()
            .where(spans.c.trace_id == trace_id, spans.c.tenant_id == tenant_id)
            .order_by(spans.c.start_ns, spans.c.span_id)
            .limit(MAX_SPANS)
        )
        return [_span(row) for row in await self._fetch("get_trace", query)]


def _span(row: dict[str, Any]) -> SpanRow:
    return SpanRow(
        trace_id=row["trace_id"],
        span_id=row["span_id"],
        parent_span_id=row["parent_span_id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        kind=row["kind"],
        service=row["service"],
        start_ns=row["start_ns"],
        end_ns=row["end_ns"],
        status=row["status"],
        status_message=row["status_message"],
        attributes=row["attributes"],
        events=row["events"],
    )
