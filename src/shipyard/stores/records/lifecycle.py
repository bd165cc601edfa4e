"""``SqlLifecycleRecords``: rows by age and by subject (``lifecycle_base.LifecycleRecords``).

Pruning deletes in transactions of at most ``PRUNE_BATCH`` rows (the condition repeated on the
deleted rows), so a backlog does not hold the other writes up. A subject's erasure is one
transaction: its rows go together or not at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from shipyard.stores.records._database import Database
from shipyard.stores.records.artifacts_base import ArtifactRecord
from shipyard.stores.records.base import FINAL_TASK_STATES
from shipyard.stores.records.schema import (
    artifacts,
    run_events,
    runs,
    sessions,
    task_transitions,
    tasks,
    tenants,
    webhook_deliveries,
)
from shipyard.stores.records.webhooks import PRUNE_BATCH

__all__ = ["SqlLifecycleRecords"]

IDS_PER_STATEMENT = 1000
MAX_GENERATIONS = 32
"""How deep runs started by runs are followed from a subject's runs."""


class SqlLifecycleRecords:
    """``LifecycleRecords`` over a shared ``Database``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def tenant_ids(self, *, after: str | None = None, limit: int = 1000) -> list[str]:
        query = sa.select(tenants.c.id).order_by(tenants.c.id).limit(max(limit, 1))
        if after is not None:
            query = query.where(tenants.c.id > after)
        return [row["id"] for row in await self._db.fetch("tenant_ids", query)]

    async def prune_runs(self, tenant_id: str, before: datetime) -> int:
        old = _old("runs", tenant_id, before)
        batch = sa.select(runs.c.id).where(old).limit(PRUNE_BATCH)

        async def work(conn: AsyncConnection) -> int:
            ids = list((await conn.execute(batch)).scalars())
            if ids:
                await conn.execute(run_events.delete().where(run_events.c.run_id.in_(ids)))
                await conn.execute(runs.delete().where(runs.c.id.in_(ids), old))
            return len(ids)

        return await self._batches("prune_runs", work)

    async def prune_events(self, tenant_id: str, before: datetime) -> int:
        old = _old("run_events", tenant_id, before)
        having = sa.select(run_events.c.run_id).where(old).distinct().limit(PRUNE_BATCH)
        stmt = run_events.delete().where(run_events.c.run_id.in_(having), old)
        return await self._batches_of("prune_events", stmt)

    async def prune_tasks(self, tenant_id: str, before: datetime) -> int:
        old = _old("tasks", tenant_id, before)
        batch = sa.select(tasks.c.id).where(old).limit(PRUNE_BATCH)

        async def work(conn: AsyncConnection) -> int:
            ids = list((await conn.execute(batch)).scalars())
            if ids:
                await _delete_task_rows(conn, ids)
                await conn.execute(tasks.delete().where(tasks.c.id.in_(ids), old))
            return len(ids)

        return await self._batches("prune_tasks", work)

    async def prune_sessions(self, tenant_id: str, before: datetime, *, limit: int) -> list[str]:
        old = _old("sessions", tenant_id, before)
        query = sa.select(sessions.c.id).where(old).order_by(sessions.c.id).limit(max(limit, 1))

        async def work(conn: AsyncConnection) -> list[str]:
            ids = list((await conn.execute(query)).scalars())
            if ids:
                await conn.execute(sessions.delete().where(sessions.c.id.in_(ids), old))
            return ids

        return await self._db.write("prune_sessions", work)

    async def prune_webhooks_of(self, tenant_id: str, before: datetime) -> int:
        settled = _old("webhook_deliveries", tenant_id, before)
        batch = sa.select(webhook_deliveries.c.task_id).where(settled).limit(PRUNE_BATCH)
        stmt = webhook_deliveries.delete().where(webhook_deliveries.c.task_id.in_(batch), settled)
        return await self._batches_of("prune_webhooks_of", stmt)

    async def old_artifacts(
        self, tenant_id: str, before: datetime, *, limit: int
    ) -> list[ArtifactRecord]:
        query = (
            artifacts.select()
            .where(_old("artifacts", tenant_id, before))
            .order_by(artifacts.c.id)
            .limit(max(limit, 1))
        )
        rows = await self._db.fetch("old_artifacts", query)
        return [ArtifactRecord.model_validate(row) for row in rows]

    async def artifacts_of_runs(
        self, tenant_id: str, run_ids: Sequence[str]
    ) -> list[ArtifactRecord]:
        found: list[ArtifactRecord] = []
        for chunk in _chunks(run_ids):
            query = artifacts.select().where(
                artifacts.c.tenant_id == tenant_id, artifacts.c.run_id.in_(chunk)
            )
            rows = await self._db.fetch("artifacts_of_runs", query)
            found += [ArtifactRecord.model_validate(row) for row in rows]
        return found

    async def subject_sessions(self, tenant_id: str, subject: str) -> list[str]:
        query = sa.select(sessions.c.id).where(
            sessions.c.tenant_id == tenant_id, sessions.c.subject == subject
        )
        return [row["id"] for row in await self._db.fetch("subject_sessions", query)]

    async def subject_runs(self, tenant_id: str, subject: str) -> list[str]:
        async with self._db.translate("subject_runs"), self._db.engine.connect() as conn:
            run_ids, _, _ = await _subject_ids(conn, tenant_id, subject)
        return run_ids

    async def erase_subject_rows(self, tenant_id: str, subject: str) -> dict[str, int]:
        async def work(conn: AsyncConnection) -> dict[str, int]:
            run_ids, task_ids, session_ids = await _subject_ids(conn, tenant_id, subject)
            counts = {"runs": 0, "run_events": 0, "artifacts": 0}
            counts |= {"tasks": 0, "task_transitions": 0, "webhooks": 0, "sessions": 0}
            for chunk in _chunks(run_ids):
                counts["run_events"] += await _delete(conn, run_events, run_events.c.run_id, chunk)
                counts["artifacts"] += await _delete(conn, artifacts, artifacts.c.run_id, chunk)
                counts["runs"] += await _delete(conn, runs, runs.c.id, chunk)
            for chunk in _chunks(task_ids):
                moved, hooks = await _delete_task_rows(conn, chunk)
                counts["task_transitions"] += moved
                counts["webhooks"] += hooks
                counts["tasks"] += await _delete(conn, tasks, tasks.c.id, chunk)
            for chunk in _chunks(session_ids):
                counts["sessions"] += await _delete(conn, sessions, sessions.c.id, chunk)
            return counts

        return await self._db.write("erase_subject_rows", work)

    async def _batches(
        self, operation: str, work: Callable[[AsyncConnection], Awaitable[int]]
    ) -> int:
        deleted = 0
        while True:
            done: int = await self._db.write(operation, work)
            deleted += done
            if done < PRUNE_BATCH:
                return deleted

    async def _batches_of(self, operation: str, stmt: sa.Delete) -> int:
        async def work(conn: AsyncConnection) -> int:
            return (await conn.execute(stmt)).rowcount

        return await self._batches(operation, work)


def _old(table: str, tenant_id: str, before: datetime) -> sa.ColumnElement[bool]:
    """The rows of ``table`` the retention sweep deletes: a tenant's, older than ``before``.
    Each is served by a ``(tenant_id, <its age column>)`` index (0015); ``old_rows`` gives the
    selects, which the tests EXPLAIN."""
    match table:
        case "run_events":
            e = run_events.c
            return sa.and_(e.tenant_id == tenant_id, e.ts < before.timestamp())
        case "tasks":
            t = tasks.c
            final = t.status.in_(sorted(FINAL_TASK_STATES))
            return sa.and_(t.tenant_id == tenant_id, t.updated_at < before, final)
        case "webhook_deliveries":
            w = webhook_deliveries.c
            settled = w.status.in_(("delivered", "failed"))
            return sa.and_(w.tenant_id == tenant_id, w.updated_at < before, settled)
        case _:
            c = _TABLES[table].c
            return sa.and_(c.tenant_id == tenant_id, c.created_at < before)


_TABLES = {t.name: t for t in (runs, run_events, tasks, sessions, artifacts, webhook_deliveries)}
PRUNED = tuple(_TABLES)
"""The tables the retention sweep deletes from by age."""


def old_rows(table: str, tenant_id: str, before: datetime) -> sa.Select[Any]:
    """A select of the rows of ``table`` a sweep deletes (to EXPLAIN: which index it uses)."""
    return sa.select(_TABLES[table]).where(_old(table, tenant_id, before)).limit(PRUNE_BATCH)


async def _subject_ids(
    conn: AsyncConnection, tenant_id: str, subject: str
) -> tuple[list[str], list[str], list[str]]:
    """The subject's runs, tasks and sessions: those naming it, the runs of its sessions and
    tasks, the runs those started, and the tasks those runs were."""
    named = sessions.c.subject == subject
    session_ids = await _ids(conn, sessions.c.id, sessions, named, tenant_id)
    task_ids = set(await _ids(conn, tasks.c.id, tasks, tasks.c.subject == subject, tenant_id))
    found = sa.or_(
        runs.c.subject == subject,
        *[runs.c.session_id.in_(chunk) for chunk in _chunks(session_ids)],
        *[runs.c.task_id.in_(chunk) for chunk in _chunks(sorted(task_ids))],
    )
    run_ids = set(await _ids(conn, runs.c.id, runs, found, tenant_id))
    fresh = set(run_ids)
    for _ in range(MAX_GENERATIONS):
        if not fresh:
            break
        children: set[str] = set()
        for chunk in _chunks(sorted(fresh)):
            started = runs.c.parent_run_id.in_(chunk)
            children |= set(await _ids(conn, runs.c.id, runs, started, tenant_id))
        fresh = children - run_ids
        run_ids |= fresh
    for chunk in _chunks(sorted(run_ids)):
        ran = tasks.c.run_id.in_(chunk)
        task_ids |= set(await _ids(conn, tasks.c.id, tasks, ran, tenant_id))
    return sorted(run_ids), sorted(task_ids), session_ids


async def _ids(
    conn: AsyncConnection, column: sa.Column[Any], table: sa.Table, where: Any, tenant_id: str
) -> list[str]:
    query = sa.select(column).where(table.c.tenant_id == tenant_id, where)
    return list((await conn.execute(query)).scalars())


async def _delete_task_rows(conn: AsyncConnection, task_ids: Sequence[str]) -> tuple[int, int]:
    """Delete the tasks' moves and webhook deliveries; how many of each."""
    moves = await _delete(conn, task_transitions, task_transitions.c.task_id, task_ids)
    hooks = await _delete(conn, webhook_deliveries, webhook_deliveries.c.task_id, task_ids)
    return moves, hooks


async def _delete(
    conn: AsyncConnection, table: sa.Table, column: sa.Column[Any], ids: Sequence[str]
) -> int:
    return (await conn.execute(table.delete().where(column.in_(ids)))).rowcount


def _chunks(ids: Iterable[str]) -> list[list[str]]:
    items = list(ids)
    return [items[i : i + IDS_PER_STATEMENT] for i in range(0, len(items), IDS_PER_STATEMENT)]
