"""``SqlRunRecords``: runs and their events (``base.RunRecords``) on the SQL record store.

``list_runs`` pages newest first on the run id (ids are time-ordered); the cursor is the last id
of the previous page. Its text search is a substring match (``LIKE``/``ILIKE``) over the rows
its other filters and its window of time leave, read newest first until a page is full: no
index to keep up on the hot write path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from shipyard.stores.records._database import Database, Insert, readable
from shipyard.stores.records.base import Page, RunKind, RunRecord, RunStatus, RunSummary
from shipyard.stores.records.lifecycle_base import subject_of
from shipyard.stores.records.schema import run_events, runs
from shipyard.telemetry.events import EPHEMERAL, Event

__all__ = ["MAX_EVENTS", "SqlRunRecords"]

MAX_EVENTS = 10_000
MAX_SUMMARIES = 100_000
_SUMMARY = [f.name for f in fields(RunSummary)]
_UPDATABLE = [c.name for c in runs.columns if c.name not in ("id", "tenant_id", "created_at")]


class SqlRunRecords:
    """``RunRecords`` over a shared ``Database``; a run's batch is one of the hot writes (a
    prepared statement on a SQLite file)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._upsert_runs_stmt = _upsert_runs(db)
        self._insert_events_stmt = db.insert(run_events).on_conflict_do_nothing(
            index_elements=["run_id", "seq"]
        )
        for stmt in (self._upsert_runs_stmt, self._insert_events_stmt):
            db.prepare(stmt)  # run and event rows carry every column

    async def write_batch(self, runs_: Sequence[RunRecord], events: Sequence[Event]) -> None:
        """Upsert runs by id (the last one of an id in the batch wins) and insert events,
        skipping ``(run_id, seq)`` pairs already stored, in one transaction.

        Ephemeral events (``llm.delta``) are never stored. A run id stored under another tenant
        is left untouched.
        """
        run_rows = list({run.id: _run_row(run) for run in runs_}.values())
        event_rows = [_event_row(e) for e in events if e.type not in EPHEMERAL]
        if not run_rows and not event_rows:
            return

        async def work(conn: AsyncConnection) -> None:
            if run_rows:
                await conn.execute(self._upsert_runs_stmt, run_rows)
            if event_rows:
                await conn.execute(self._insert_events_stmt, event_rows)

        await self._db.write("write_batch", work)

    async def get_run(self, tenant_id: str, run_id: str) -> RunRecord | None:
        query = runs.select().where(runs.c.tenant_id == tenant_id, runs.c.id == run_id)
        rows = await self._db.fetch("get_run", query)
        return RunRecord.model_validate(rows[0]) if rows else None

    async def list_runs(
        self,
        tenant_id: str,
        *,
        agent: str | None = None,
        status: RunStatus | None = None,
        session_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        task_id: str | None = None,
        kind: RunKind | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        parent_run_id: str | None = None,
        text: str | None = None,
    ) -> Page[RunRecord]:
        """Newest first; ``limit`` is clamped to 1..500; ``cursor`` is the last id seen.
        ``since``/``until`` bound the id (time-ordered: ``new_id``), a range of its index."""
        query = runs.select().where(runs.c.tenant_id == tenant_id)
        for column, value in (
            (runs.c.agent, agent),
            (runs.c.status, status),
            (runs.c.session_id, session_id),
            (runs.c.task_id, task_id),
            (runs.c.parent_run_id, parent_run_id),
        ):
            if value is not None:
                query = query.where(column == value)
        if kind is not None:
            query = query.where(*_KINDS[kind])
        if since is not None:
            query = query.where(runs.c.id >= _id_at(since))
        if until is not None:
            query = query.where(runs.c.id < _id_at(until))
        if text:
            query = query.where(_mentions(text))
        return await self._db.page("list_runs", query, runs.c.id, RunRecord, limit, cursor)

    async def run_summaries(
        self, tenant_id: str, *, since: datetime, limit: int
    ) -> list[RunSummary]:
        c = runs.c
        query = (
            sa.select(*(c[name] for name in _SUMMARY))
            .where(c.tenant_id == tenant_id, c.id >= _id_at(since))
            .order_by(c.id.desc())
            .limit(min(max(limit, 1), MAX_SUMMARIES))
        )
        rows = await self._db.fetch_tuples("run_summaries", query)
        return [RunSummary(*row) for row in rows]

    async def list_events(
        self, tenant_id: str, run_id: str, *, after_seq: int = 0, limit: int = 1000
    ) -> list[Event]:
        """In ``seq`` order, those after ``after_seq``; ``limit`` is clamped to 1..10,000."""
        query = (
            run_events.select()
            .where(run_events.c.tenant_id == tenant_id, run_events.c.run_id == run_id)
            .where(run_events.c.seq > after_seq)
            .order_by(run_events.c.seq)
            .limit(min(max(limit, 1), MAX_EVENTS))
        )
        return readable("list_events", Event, await self._db.fetch("list_events", query))


def _mentions(text: str) -> sa.ColumnElement[bool]:
    """The run's input (its JSON text) or output contains ``text``, any case (``%`` and ``_``
    in it are literal)."""
    return sa.or_(
        sa.cast(runs.c.input, sa.Text).icontains(text, autoescape=True),
        runs.c.output.icontains(text, autoescape=True),
    )


def _upsert_runs(db: Database) -> Insert:
    stmt = db.insert(runs)
    return stmt.on_conflict_do_update(
        index_elements=["id"],
        set_={name: stmt.excluded[name] for name in _UPDATABLE},
        where=runs.c.tenant_id == stmt.excluded.tenant_id,
    )


def _run_row(run: RunRecord) -> dict[str, Any]:
    return run.model_dump() | {"subject": subject_of(run.metadata)}


_KINDS: dict[str, tuple[Any, ...]] = {
    "session": (runs.c.session_id.is_not(None),),
    "task": (runs.c.task_id.is_not(None), runs.c.session_id.is_(None)),
    "invoke": (runs.c.task_id.is_(None), runs.c.session_id.is_(None)),
}


def _id_at(at: datetime) -> str:
    """The smallest run id created at ``at`` (``new_id``: the time in ms, 12 hex digits)."""
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return f"run_{max(int(aware.timestamp() * 1000), 0):012x}"


def _event_row(e: Event) -> dict[str, Any]:
    return {
        "run_id": e.run_id,
        "seq": e.seq,
        "tenant_id": e.tenant_id,
        "type": e.type,
        "ts": e.ts,
        "agent": e.agent,
        "session_id": e.session_id,
        "task_id": e.task_id,
        "trace_id": e.trace_id,
        "span_id": e.span_id,
        "parent_span_id": e.parent_span_id,
        "data": e.data,
    }
