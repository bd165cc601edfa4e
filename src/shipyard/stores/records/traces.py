"""``SqlSpanRecords``: a trace's stored run events (``base.SpanRecords``) on the SQL record store.

The store keeps no spans: a trace is the stored events of its runs, which
``telemetry.tracing.spans_of`` turns into spans (``GET /v1/traces/{id}``).
"""

from __future__ import annotations

import sqlalchemy as sa

from shipyard.stores.records._database import Database
from shipyard.stores.records.schema import run_events, runs
from shipyard.telemetry.events import Event

__all__ = ["MAX_TRACE_RUNS", "SqlSpanRecords"]

MAX_TRACE_RUNS = 1000
"""The most runs one trace read covers."""


class SqlSpanRecords:
    """``SpanRecords`` over a shared ``Database``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def trace_events(self, tenant_id: str, trace_id: str) -> list[Event]:
        """The stored events of the tenant's runs in the trace (``MAX_TRACE_RUNS`` runs at
        most), by run and ``seq``."""
        in_trace = sa.select(runs.c.id).where(
            runs.c.tenant_id == tenant_id, runs.c.trace_id == trace_id
        )
        query = (
            run_events.select()
            .where(run_events.c.run_id.in_(in_trace.limit(MAX_TRACE_RUNS).scalar_subquery()))
            .order_by(run_events.c.run_id, run_events.c.seq)
        )
        rows = await self._db.fetch("get_trace", query)
        return [Event.model_validate(row) for row in rows]
