"""``SqlRecordStore``: the record store on SQLite (embedded) or PostgreSQL, via SQLAlchemy Core.

One class serves both databases; the few dialect differences (upserts, connection setup,
driver exceptions) are chosen once, from ``engine.dialect.name``.

Pagination: ``list_runs`` pages newest first on the run id (ids are time-ordered); the cursor
is the last id of the previous page.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog
from alembic.script import ScriptDirectory
from pydantic import BaseModel, ValidationError
from sqlalchemy import exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shipyard.errors import StoreError, StoreRejected
from shipyard.stores._group_commit import GroupCommit
from shipyard.stores.records import engines
from shipyard.stores.records.base import (
    ApiKeyRecord,
    Migration,
    Page,
    PolicyChange,
    RunRecord,
    RunStatus,
    SessionRecord,
    TaskRecord,
    TaskStatus,
    TaskTransition,
    TenantRecord,
    WebhookDelivery,
    WebhookStatus,
    WorkerRecord,
)
from shipyard.stores.records.group_commit import LoopFirst
from shipyard.stores.records.policy import TenantPolicy
from shipyard.stores.records.schema import (
    UTCDateTime,
    api_keys,
    run_events,
    runs,
    sessions,
    task_transitions,
    tasks,
    tenants,
    webhook_deliveries,
    workers,
)
from shipyard.stores.records.tenants import SqlTenantRecords
from shipyard.stores.storable import value_problem
from shipyard.telemetry.events import EPHEMERAL, Event
from shipyard.telemetry.spans import SpanRow

__all__ = ["SqlRecordStore"]

log = structlog.get_logger(__name__)

MAX_PAGE = 500
MAX_EVENTS = 10_000
PRUNE_BATCH = 1000
"""Outbox rows one pruning transaction deletes at most: a backlog (the first prune of a full
outbox) goes in several, so the other writes of the moment are not held up behind it."""
IDS_PER_STATEMENT = 1000
"""Task ids one ``IN`` list carries at most (PostgreSQL's driver takes 32,767 parameters a
statement)."""
SQLITE_COMMIT_DELAY_S = 0.002
"""The default commit delay (``stores._group_commit``) on a SQLite file, whose transactions run
on the loop, so that no write joins one while it runs. On PostgreSQL a transaction waits on the
network and the writes that come meanwhile join the next one: a delay there saved no worker
CPU, so none by default."""
_UPDATABLE = [c.name for c in runs.columns if c.name not in ("id", "tenant_id", "created_at")]

Insert = sqlite.Insert | postgresql.Insert
_Row = TypeVar("_Row", RunRecord, SessionRecord, TaskRecord)
_Model = TypeVar("_Model", bound=BaseModel)
_T = TypeVar("_T")

# Errors about the data, not the store's health: the same write would fail again.
MAX_TRACE_RUNS = 1000
"""The most runs one trace read covers."""

_REFUSALS = (
    exc.DataError,
    exc.IntegrityError,
    sqlite3.DataError,
    sqlite3.IntegrityError,
    UnicodeEncodeError,  # a lone surrogate, which the stdlib driver cannot encode
)


class SqlRecordStore:
    """The ``RecordStore`` on an async SQLAlchemy engine (``aiosqlite`` or ``asyncpg``)."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        driver_errors: tuple[type[Exception], ...] = (),
        sqlite_path: str | None = None,
        commit_delay_s: float | None = None,
    ):
        """``commit_delay_s``: see ``stores._group_commit``; ``None`` is the backend's default
        (``SQLITE_COMMIT_DELAY_S`` on a SQLite file, none on PostgreSQL)."""
        self._engine = engine
        self._dialect = engine.dialect.name
        self._upsert_runs_stmt = self._upsert_runs()
        self._insert_task_stmt = self._insert(tasks)
        self._insert_once_stmt = self._insert(tasks).on_conflict_do_nothing(
            index_elements=["tenant_id", "idempotency_key"]
        )
        self._insert_move_stmt = task_transitions.insert()
        upsert = self._insert(workers)
        self._upsert_worker_stmt = upsert.on_conflict_do_update(
            index_elements=["name"],
            set_={c.name: upsert.excluded[c.name] for c in workers.c if c.name != "name"},
        )
        self._transitions: dict[tuple[tuple[str, ...], tuple[str, ...], bool, bool], sa.Update] = {}
        self._insert_events_stmt = self._insert_events()
        # Every write is group-committed (see group_commit): the process's writes of the moment,
        # run batches and task moves alike, share one transaction. On a SQLite file they run on
        # the loop, the hot ones as statements compiled once for the driver.
        self._loop_first = LoopFirst(sqlite_path) if sqlite_path else None
        if self._loop_first is not None:
            for stmt in (self._upsert_runs_stmt, self._insert_events_stmt):
                self._loop_first.prepare(stmt)  # run and event rows carry every column
            moves = ("task_id", "status", "at", "detail")
            self._loop_first.prepare(self._insert_move_stmt, keys=moves)
            for stmt in (self._insert_task_stmt, self._insert_once_stmt):
                self._loop_first.prepare(stmt, keys=TaskRecord.model_fields)
        begin = self._loop_first.begin if self._loop_first else self._engine.begin
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
        self._tenants = SqlTenantRecords(write=self._write, fetch=self._fetch, insert=self._insert)

    @classmethod
    def from_url(cls, url: str, *, commit_delay_s: float | None = None) -> SqlRecordStore:
        """Build from ``sqlite:///path.db``, ``sqlite:////abs/path.db``, ``sqlite://`` (memory)
        or ``postgresql://user@host:port/db`` (``postgres://`` too)."""
        parsed = engines.parse(url)
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database or ":memory:"
            return cls(
                engines.sqlite_engine(parsed),
                driver_errors=(sqlite3.Error,),
                sqlite_path=None if database == ":memory:" else database,
                commit_delay_s=commit_delay_s,
            )
        import asyncpg

        engine = engines.create_engine(parsed.set(drivername="postgresql+asyncpg"))
        return cls(
            engine,
            driver_errors=(asyncpg.PostgresError, asyncpg.InterfaceError),
            commit_delay_s=commit_delay_s,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    async def migrate(self) -> Migration:
        async def work(conn: AsyncConnection) -> Migration:
            before, after = await conn.run_sync(engines.upgrade)
            return Migration(before=before, after=after)

        return await self._write("migrate", work)

    async def is_current(self) -> bool:
        """Whether the schema is at the newest migration (False on an empty database)."""
        heads = set(ScriptDirectory.from_config(engines.alembic_config()).get_heads())
        async with self._translate("is_current"), self._engine.connect() as conn:
            current = await conn.run_sync(engines.current_heads)
        return current == heads

    async def ping(self) -> None:
        async with self._translate("ping"), self._engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self._engine.dispose()
        if self._loop_first is not None:
            self._loop_first.close()

    # -- tenants and keys -----------------------------------------------------------------------

    async def ensure_tenant(self, tenant_id: str) -> None:
        await self._write("ensure_tenant", lambda conn: self._ensure_tenant(conn, tenant_id))

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        return await self._tenants.get_tenant(tenant_id)

    async def put_tenant_policy(
        self, tenant_id: str, policy: TenantPolicy, *, expected_version: int | None, changed_by: str
    ) -> TenantRecord:
        return await self._tenants.put_tenant_policy(
            tenant_id, policy, expected_version=expected_version, changed_by=changed_by
        )

    async def list_policy_changes(
        self, tenant_id: str, *, before_version: int | None = None, limit: int = 50
    ) -> list[PolicyChange]:
        return await self._tenants.list_policy_changes(
            tenant_id, before_version=before_version, limit=limit
        )

    async def add_api_key(self, key: ApiKeyRecord) -> None:
        """Store a key, creating its tenant if needed."""

        async def work(conn: AsyncConnection) -> None:
            await self._ensure_tenant(conn, key.tenant_id)
            await conn.execute(api_keys.insert().values(key.model_dump()))

        await self._write("add_api_key", work)

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        """The key with this hash, of any tenant, revoked or not."""
        query = api_keys.select().where(api_keys.c.key_hash == key_hash)
        rows = await self._fetch("find_api_key", query)
        return ApiKeyRecord.model_validate(rows[0]) if rows else None

    async def list_api_keys(self, tenant_id: str | None = None) -> list[ApiKeyRecord]:
        """Keys of one tenant, or of all tenants; oldest first."""
        query = api_keys.select().order_by(api_keys.c.created_at, api_keys.c.id)
        if tenant_id is not None:
            query = query.where(api_keys.c.tenant_id == tenant_id)
        return [ApiKeyRecord.model_validate(row) for row in await self._fetch("list_keys", query)]

    async def revoke_api_key(self, key_id: str) -> bool:
        """Mark a key revoked (keeping the first revocation time); False if there is no such key."""
        revoked_at = sa.func.coalesce(
            api_keys.c.revoked_at, sa.bindparam("now", type_=UTCDateTime())
        )
        stmt = api_keys.update().where(api_keys.c.id == key_id).values(revoked_at=revoked_at)
        result = await self._write(
            "revoke_api_key", lambda conn: conn.execute(stmt, {"now": datetime.now(UTC)})
        )
        return result.rowcount > 0

    # -- runs and events ------------------------------------------------------------------------

    async def write_batch(self, runs_: Sequence[RunRecord], events: Sequence[Event]) -> None:
        """Upsert runs by id (the last one of an id in the batch wins) and insert events,
        skipping ``(run_id, seq)`` pairs already stored, in one transaction.

        Ephemeral events (``llm.delta``) are never stored. A run id stored under another tenant
        is left untouched.
        """
        run_rows = list({run.id: run.model_dump() for run in runs_}.values())
        event_rows = [_event_row(e) for e in events if e.type not in EPHEMERAL]
        if not run_rows and not event_rows:
            return

        async def work(conn: AsyncConnection) -> None:
            if run_rows:
                await conn.execute(self._upsert_runs_stmt, run_rows)
            if event_rows:
                await conn.execute(self._insert_events_stmt, event_rows)

        await self._write("write_batch", work)

    async def get_run(self, tenant_id: str, run_id: str) -> RunRecord | None:
        query = runs.select().where(runs.c.tenant_id == tenant_id, runs.c.id == run_id)
        rows = await self._fetch("get_run", query)
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
    ) -> Page[RunRecord]:
        """Newest first; ``limit`` is clamped to 1..500; ``cursor`` is the last id seen."""
        query = runs.select().where(runs.c.tenant_id == tenant_id)
        if agent is not None:
            query = query.where(runs.c.agent == agent)
        if status is not None:
            query = query.where(runs.c.status == status)
        if session_id is not None:
            query = query.where(runs.c.session_id == session_id)
        return await self._page("list_runs", query, runs.c.id, RunRecord, limit, cursor)

    # -- sessions -------------------------------------------------------------------------------

    async def add_session(self, session: SessionRecord) -> None:
        stmt = sessions.insert().values(session.model_dump())
        await self._write("add_session", lambda conn: conn.execute(stmt))

    async def get_session(self, tenant_id: str, session_id: str) -> SessionRecord | None:
        query = sessions.select().where(
            sessions.c.tenant_id == tenant_id, sessions.c.id == session_id
        )
        rows = await self._fetch("get_session", query)
        return SessionRecord.model_validate(rows[0]) if rows else None

    async def list_sessions(
        self,
        tenant_id: str,
        *,
        agent: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[SessionRecord]:
        query = sessions.select().where(
            sessions.c.tenant_id == tenant_id, sessions.c.deleted_at.is_(None)
        )
        if agent is not None:
            query = query.where(sessions.c.agent == agent)
        return await self._page("list_sessions", query, sessions.c.id, SessionRecord, limit, cursor)

    async def delete_session(self, tenant_id: str, session_id: str) -> bool:
        now = sa.func.coalesce(sessions.c.deleted_at, sa.bindparam("now", type_=UTCDateTime()))
        stmt = (
            sessions.update()
            .where(sessions.c.tenant_id == tenant_id, sessions.c.id == session_id)
            .values(deleted_at=now)
        )
        result = await self._write(
            "delete_session", lambda conn: conn.execute(stmt, {"now": datetime.now(UTC)})
        )
        return result.rowcount > 0

    # -- tasks ----------------------------------------------------------------------------------

    async def create_task(self, task: TaskRecord) -> tuple[TaskRecord, bool]:
        """Idempotent per tenant on ``idempotency_key``: a second create returns the first."""
        row = task.model_dump()
        stmt = self._insert_task_stmt if task.idempotency_key is None else self._insert_once_stmt
        move = {"task_id": task.id, "status": task.status, "at": task.created_at, "detail": {}}

        async def work(conn: AsyncConnection) -> bool:
            if (await conn.execute(stmt, row)).rowcount == 0:
                return False
            await conn.execute(self._insert_move_stmt, move)
            return True

        if await self._write("create_task", work):
            return task, True
        existing = await self._fetch(
            "create_task",
            tasks.select().where(
                tasks.c.tenant_id == task.tenant_id,
                tasks.c.idempotency_key == task.idempotency_key,
            ),
        )
        return TaskRecord.model_validate(existing[0]), False

    async def handed_over(self, task_ids: Sequence[str]) -> None:
        await self._mark_handovers("handed_over", task_ids, handover_pending=False)

    async def offering(self, task_ids: Sequence[str]) -> None:
        await self._mark_handovers("offering", task_ids, handover_at=datetime.now(UTC))

    async def _mark_handovers(self, operation: str, task_ids: Sequence[str], **values: Any) -> None:
        """On the pending ones of ``task_ids``, in one transaction (``IDS_PER_STATEMENT`` a
        statement)."""
        step = IDS_PER_STATEMENT
        chunks = [list(task_ids[i : i + step]) for i in range(0, len(task_ids), step)]
        if not chunks:
            return
        pending = tasks.c.handover_pending.is_(True)

        async def work(conn: AsyncConnection) -> None:
            for chunk in chunks:
                stmt = tasks.update().where(tasks.c.id.in_(chunk), pending).values(**values)
                await conn.execute(stmt)

        await self._write(operation, work)

    async def take_stale_handovers(
        self, *, stale_before: datetime, limit: int = 1000
    ) -> list[TaskRecord]:
        stale = (
            sa.select(tasks.c.id)
            .where(
                tasks.c.handover_pending.is_(True),
                sa.func.coalesce(tasks.c.handover_at, tasks.c.created_at) < stale_before,
            )
            .order_by(tasks.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL; a SQLite writer is alone anyway
        )
        stmt = (
            tasks.update()
            .where(tasks.c.id.in_(stale.scalar_subquery()))
            .values(handover_at=datetime.now(UTC))
            .returning(*tasks.c)
        )

        async def work(conn: AsyncConnection) -> list[TaskRecord]:
            rows = (await conn.execute(stmt)).mappings().all()
            return sorted((TaskRecord.model_validate(dict(r)) for r in rows), key=lambda t: t.id)

        return await self._write("take_stale_handovers", work)

    async def pending_handovers(
        self, *, after_id: str | None = None, limit: int = 1000
    ) -> list[TaskRecord]:
        query = (
            tasks.select()
            .where(tasks.c.handover_pending.is_(True))
            .order_by(tasks.c.id)
            .limit(limit)
        )
        if after_id is not None:
            query = query.where(tasks.c.id > after_id)
        rows = await self._fetch("pending_handovers", query)
        return [TaskRecord.model_validate(r) for r in rows]

    async def get_task(self, tenant_id: str, task_id: str) -> TaskRecord | None:
        query = tasks.select().where(tasks.c.tenant_id == tenant_id, tasks.c.id == task_id)
        rows = await self._fetch("get_task", query)
        return TaskRecord.model_validate(rows[0]) if rows else None

    async def list_tasks(
        self,
        tenant_id: str,
        *,
        status: TaskStatus | None = None,
        agent: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[TaskRecord]:
        query = tasks.select().where(tasks.c.tenant_id == tenant_id)
        if status is not None:
            query = query.where(tasks.c.status == status)
        if agent is not None:
            query = query.where(tasks.c.agent == agent)
        return await self._page("list_tasks", query, tasks.c.id, TaskRecord, limit, cursor)

    async def transition_task(
        self,
        tenant_id: str,
        task_id: str,
        status: TaskStatus,
        *,
        expected: frozenset[str],
        from_offer: str | None = None,
        count_attempt: bool = False,
        detail: dict[str, Any] | None = None,
        **fields: Any,
    ) -> TaskRecord | None:
        """A compare-and-set on the status, and the move recorded, in one transaction."""
        now = datetime.now(UTC)
        stmt = self._transition_stmt(
            tuple(sorted(fields)), tuple(sorted(expected)), from_offer is not None, count_attempt
        )
        params = {
            "w_tenant_id": tenant_id,
            "w_id": task_id,
            "v_status": status,
            "v_updated_at": now,
            **{f"v_{name}": value for name, value in fields.items()},
        }
        if from_offer is not None:
            params["w_offer"] = from_offer
        move = {"task_id": task_id, "status": status, "at": now, "detail": detail or {}}

        async def work(conn: AsyncConnection) -> TaskRecord | None:
            row = (await conn.execute(stmt, params)).mappings().first()
            if row is None:
                return None
            await conn.execute(self._insert_move_stmt, move)
            return TaskRecord.model_validate(dict(row))

        return await self._write("transition_task", work)

    async def task_transitions(self, tenant_id: str, task_id: str) -> list[TaskTransition]:
        if await self.get_task(tenant_id, task_id) is None:
            return []
        query = (
            task_transitions.select()
            .where(task_transitions.c.task_id == task_id)
            .order_by(task_transitions.c.id)
        )
        return [TaskTransition.model_validate(r) for r in await self._fetch("task_moves", query)]

    async def _page(
        self,
        operation: str,
        query: sa.Select[Any],
        key: sa.Column[Any],
        model: type[_Row],
        limit: int,
        cursor: str | None,
    ) -> Page[_Row]:
        """Keyset pagination, newest first on a time-ordered id; one extra row tells if more."""
        limit = min(max(limit, 1), MAX_PAGE)
        if cursor:
            query = query.where(key < cursor)
        rows = await self._fetch(operation, query.order_by(key.desc()).limit(limit + 1))
        items = _readable(operation, model, rows[:limit])
        last = rows[limit - 1][key.name] if len(rows) > limit else None
        return Page[_Row](items=items, next_cursor=last)

    # -- workers --------------------------------------------------------------------------------

    async def heartbeat(self, worker: WorkerRecord) -> None:
        row = worker.model_dump()
        await self._write("heartbeat", lambda conn: conn.execute(self._upsert_worker_stmt, row))

    async def list_workers(self, *, since: datetime | None = None) -> list[WorkerRecord]:
        query = workers.select().order_by(workers.c.last_seen.desc(), workers.c.name)
        if since is not None:
            query = query.where(workers.c.last_seen >= since)
        return [WorkerRecord.model_validate(r) for r in await self._fetch("list_workers", query)]

    async def prune_workers(self, *, seen_before: datetime) -> int:
        stmt = workers.delete().where(workers.c.last_seen < seen_before)
        result = await self._write("prune_workers", lambda conn: conn.execute(stmt))
        return result.rowcount

    # -- webhook outbox -------------------------------------------------------------------------

    async def add_webhook(self, delivery: WebhookDelivery) -> bool:
        stmt = self._insert(webhook_deliveries).on_conflict_do_nothing(index_elements=["task_id"])
        row = delivery.model_dump()
        result = await self._write("add_webhook", lambda conn: conn.execute(stmt, row))
        return bool(result.rowcount)

    async def claim_webhooks(
        self, now: datetime, *, lease_s: float, limit: int
    ) -> list[WebhookDelivery]:
        w = webhook_deliveries
        free = sa.or_(w.c.lease_until.is_(None), w.c.lease_until < now)
        due = sa.and_(w.c.status == "pending", w.c.next_at <= now, free)
        query = sa.select(w.c.task_id).where(due).order_by(w.c.next_at).limit(limit)
        candidates = [row["task_id"] for row in await self._fetch("claim_webhooks", query)]
        if not candidates:
            return []
        lease = now + timedelta(seconds=lease_s)
        claim = (
            w.update()
            .where(w.c.task_id == sa.bindparam("t"), due)
            .values(lease_until=lease, attempts=w.c.attempts + 1, updated_at=now)
            .returning(*w.c)
        )

        async def work(conn: AsyncConnection) -> list[WebhookDelivery]:
            claimed = []
            for task_id in candidates:
                row = (await conn.execute(claim, {"t": task_id})).mappings().first()
                if row is not None:
                    claimed.append(WebhookDelivery.model_validate(dict(row)))
            return claimed

        return await self._write("claim_webhooks", work)

    async def settle_webhook(
        self,
        task_id: str,
        *,
        status: WebhookStatus,
        next_at: datetime,
        error: str | None = None,
    ) -> None:
        stmt = (
            webhook_deliveries.update()
            .where(webhook_deliveries.c.task_id == task_id)
            .values(
                status=status,
                next_at=next_at,
                lease_until=None,
                last_error=error,
                updated_at=datetime.now(UTC),
            )
        )
        await self._write("settle_webhook", lambda conn: conn.execute(stmt))

    async def prune_webhooks(self, *, settled_before: datetime) -> int:
        """In transactions of at most ``PRUNE_BATCH`` rows. A settled delivery's ``next_at`` is
        when it settled (``settle_webhook``), so the ``(status, next_at)`` index finds them
        without a scan of every settled row."""
        w = webhook_deliveries
        settled = sa.and_(
            w.c.status.in_(("delivered", "failed")),
            w.c.next_at < settled_before,
            w.c.updated_at < settled_before,
        )
        batch = sa.select(w.c.task_id).where(settled).limit(PRUNE_BATCH)
        # the condition again on the deleted rows: one that changed meanwhile is not taken
        stmt = w.delete().where(w.c.task_id.in_(batch), settled)
        deleted = 0
        while True:
            result = await self._write("prune_webhooks", lambda conn: conn.execute(stmt))
            deleted += result.rowcount
            if result.rowcount < PRUNE_BATCH:
                return deleted

    # -- traces ---------------------------------------------------------------------------------

    async def get_trace(self, tenant_id: str, trace_id: str) -> list[SpanRow]:
        from shipyard.telemetry.tracing import spans_of  # the OpenTelemetry SDK: only here

        in_trace = sa.select(runs.c.id).where(
            runs.c.tenant_id == tenant_id, runs.c.trace_id == trace_id
        )
        query = (
            run_events.select()
            .where(run_events.c.run_id.in_(in_trace.limit(MAX_TRACE_RUNS).scalar_subquery()))
            .order_by(run_events.c.run_id, run_events.c.seq)
        )
        rows = await self._fetch("get_trace", query)
        return spans_of([Event.model_validate(row) for row in rows])

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
        return _readable("list_events", Event, await self._fetch("list_events", query))

    # -- private --------------------------------------------------------------------------------

    @asynccontextmanager
    async def _translate(self, operation: str) -> AsyncIterator[None]:
        """Driver and network failures leave as ``StoreError``; the message, for the log, names
        the driver's exception; a client sees only the operation (``StoreError.to_dict``)."""
        try:
            yield
        except self._errors as e:
            message = f"record store ({self._dialect}) {operation} failed: {_driver_error(e)}"
            error = StoreRejected if _refused(e) else StoreError
            raise error(message, details={"operation": operation}) from e

    async def _write(self, operation: str, work: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
        """``work`` in a write transaction, together with the process's other writes of the
        moment (``GroupCommit``)."""
        async with self._translate(operation):
            return await self._group.run(work)

    async def _fetch(self, operation: str, query: sa.Select[Any]) -> list[dict[str, Any]]:
        async with self._translate(operation), self._engine.connect() as conn:
            result = await conn.execute(query)
            return [dict(row) for row in result.mappings()]

    async def _ensure_tenant(self, conn: AsyncConnection, tenant_id: str) -> None:
        stmt = self._insert(tenants).on_conflict_do_nothing(index_elements=["id"])
        await conn.execute(stmt, {"id": tenant_id, "created_at": datetime.now(UTC)})

    def _transition_stmt(
        self, fields: tuple[str, ...], expected: tuple[str, ...], from_offer: bool, count: bool
    ) -> sa.Update:
        """The compare-and-set of a task's status from one of ``expected`` (and, with
        ``from_offer``, from its offer or none) that also sets ``fields`` (and with ``count``,
        adds one to ``attempts``): built once per
        combination, with bound parameters, so SQLAlchemy compiles it once (building a statement
        per call cost more than running it; ``IN`` would be an expanding parameter, rendered
        again on every call)."""
        key = (fields, expected, from_offer, count)
        stmt = self._transitions.get(key)
        if stmt is None:
            columns = ("status", "updated_at", *fields)
            where = [
                tasks.c.tenant_id == sa.bindparam("w_tenant_id"),
                tasks.c.id == sa.bindparam("w_id"),
                sa.or_(sa.false(), *(tasks.c.status == status for status in expected)),
            ]
            if from_offer:
                offer = sa.bindparam("w_offer", type_=tasks.c.offer.type)
                where.append(sa.or_(tasks.c.offer.is_(None), tasks.c.offer == offer))
            values: dict[str, Any] = {
                c: sa.bindparam(f"v_{c}", type_=tasks.c[c].type) for c in columns
            }
            if count:
                values["attempts"] = tasks.c.attempts + 1
            stmt = tasks.update().where(*where).values(values).returning(*tasks.c)
            self._transitions[key] = stmt
            if self._loop_first is not None:
                keys = ["w_tenant_id", "w_id", *(f"v_{c}" for c in columns)]
                if from_offer:
                    keys.append("w_offer")
                self._loop_first.prepare(stmt, keys=keys, returning=list(tasks.c))
        return stmt

    def _upsert_runs(self) -> Insert:
        stmt = self._insert(runs)
        return stmt.on_conflict_do_update(
            index_elements=["id"],
            set_={name: stmt.excluded[name] for name in _UPDATABLE},
            where=runs.c.tenant_id == stmt.excluded.tenant_id,
        )

    def _insert_events(self) -> Insert:
        return self._insert(run_events).on_conflict_do_nothing(index_elements=["run_id", "seq"])

    def _insert(self, table: sa.Table) -> Insert:
        """The dialect's ``INSERT`` that knows ``ON CONFLICT``."""
        return postgresql.insert(table) if self._dialect == "postgresql" else sqlite.insert(table)


def _refused(error: BaseException) -> bool:
    """Whether the store refused the data itself (SQLSTATE class 22 data exception or 23
    integrity violation), so that retrying the same write cannot succeed."""
    if isinstance(error, _REFUSALS):
        return True
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None) or ""
    return str(sqlstate)[:2] in ("22", "23")


def _readable(operation: str, model: type[_Model], rows: list[dict[str, Any]]) -> list[_Model]:
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


def _driver_error(error: BaseException) -> str:
    """The name of the driver's own exception, under SQLAlchemy's wrappers (no message: it may
    carry SQL or data; the full chain stays on ``__cause__`` for the logs)."""
    orig = getattr(error, "orig", None) or error
    if type(orig).__module__.startswith("sqlalchemy") and orig.__cause__ is not None:
        orig = orig.__cause__
    return type(orig).__name__


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
