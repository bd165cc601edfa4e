"""``SqlRecordStore``: the record store on SQLite (embedded) or PostgreSQL, via SQLAlchemy Core.

One class per sub-protocol of ``base.RecordStore``, each in its own module over one shared
``_database.Database`` (engine, group-committed writes, error translation):

====================  =====================  ============================================
sub-protocol          class                  module
====================  =====================  ============================================
``KeyRecords``        ``SqlKeyRecords``      ``keys``: tenants and API keys
``TenantRecords``     ``SqlTenantRecords``   ``tenants``: tenants' policies and changes
``RunRecords``        ``SqlRunRecords``      ``runs``: runs and their events
``SessionRecords``    ``SqlSessionRecords``  ``sessions``
``TaskRecords``       ``SqlTaskRecords``     ``tasks``: tasks, their moves, hand-over
``SpanRecords``       ``SqlSpanRecords``     ``traces``: a trace's stored events
``WorkerRecords``     ``SqlWorkerRecords``   ``workers``: task workers' heartbeats
``WebhookRecords``    ``SqlWebhookRecords``  ``webhooks``: the tasks' webhook outbox
``AuditRecords``      ``SqlAuditRecords``    ``audit``: the audit log and its checkpoints
``ArtifactRecords``   ``SqlArtifactRecords`` ``artifacts``: runs' artifacts (bytes: blobs)
``LifecycleRecords``  ``SqlLifecycleRecords`` ``lifecycle``: rows by age and by subject
``UsageRecords``      ``SqlUsageRecords``    ``usage``: spending by agent, model, key; over time
====================  =====================  ============================================

``SqlRecordStore`` composes them (its methods hand each call to its part) and adds the
lifecycle: migrations, ping, close. One class serves both databases; the few dialect differences
are chosen once, in ``Database``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shipyard.stores.records import engines
from shipyard.stores.records._database import SQLITE_COMMIT_DELAY_S, Database
from shipyard.stores.records.artifacts import SqlArtifactRecords
from shipyard.stores.records.artifacts_base import ArtifactRecord
from shipyard.stores.records.audit import SqlAuditRecords
from shipyard.stores.records.audit_base import (
    AuditCheckpoint,
    AuditGroup,
    AuditPage,
    AuditQuery,
    AuditRecord,
    AuditRow,
)
from shipyard.stores.records.base import (
    ApiKeyRecord,
    KeyRecords,
    Migration,
    Page,
    PolicyChange,
    RecordStore,
    RunKind,
    RunRecord,
    RunRecords,
    RunStatus,
    RunSummary,
    SessionRecord,
    SessionRecords,
    SpanRecords,
    TaskRecord,
    TaskRecords,
    TaskStatus,
    TaskTransition,
    TenantRecord,
    TenantRecords,
    WebhookDelivery,
    WebhookRecords,
    WebhookStatus,
    WorkerRecord,
    WorkerRecords,
)
from shipyard.stores.records.keys import SqlKeyRecords
from shipyard.stores.records.lifecycle import SqlLifecycleRecords
from shipyard.stores.records.policy import TenantPolicy
from shipyard.stores.records.runs import SqlRunRecords
from shipyard.stores.records.sessions import SqlSessionRecords
from shipyard.stores.records.tasks import SqlTaskRecords
from shipyard.stores.records.tenants import SqlTenantRecords
from shipyard.stores.records.traces import SqlSpanRecords
from shipyard.stores.records.usage import SqlUsageRecords
from shipyard.stores.records.usage_base import SeriesGroup, UsageGroup, UsagePoint, UsageRow
from shipyard.stores.records.webhooks import PRUNE_BATCH, SqlWebhookRecords
from shipyard.stores.records.workers import SqlWorkerRecords
from shipyard.telemetry.events import Event

__all__ = ["PRUNE_BATCH", "SQLITE_COMMIT_DELAY_S", "SqlRecordStore"]


class SqlRecordStore:
    """The ``RecordStore`` on an async SQLAlchemy engine (``aiosqlite`` or ``asyncpg``).

    Its parts are public (``keys``, ``tenants``, ``runs``, ``sessions``, ``tasks``, ``traces``,
    ``workers``, ``webhooks``, ``audit``, ``artifacts``): each is the store of one sub-protocol,
    sharing this one's engine and writes.
    """

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
        self._db = Database(
            engine,
            driver_errors=driver_errors,
            sqlite_path=sqlite_path,
            commit_delay_s=commit_delay_s,
        )
        self._engine = engine
        self.keys = SqlKeyRecords(self._db)
        self.tenants = SqlTenantRecords(self._db)
        self.runs = SqlRunRecords(self._db)
        self.sessions = SqlSessionRecords(self._db)
        self.tasks = SqlTaskRecords(self._db)
        self.traces = SqlSpanRecords(self._db)
        self.workers = SqlWorkerRecords(self._db)
        self.webhooks = SqlWebhookRecords(self._db)
        self.audit = SqlAuditRecords(self._db)
        self.artifacts = SqlArtifactRecords(self._db)
        self.lifecycle = SqlLifecycleRecords(self._db)
        self.usage_records = SqlUsageRecords(self._db)

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
            driver_errors=(
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                asyncpg.InternalClientError,
            ),
            commit_delay_s=commit_delay_s,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    async def migrate(self) -> Migration:
        async def work(conn: AsyncConnection) -> Migration:
            before, after = await conn.run_sync(engines.upgrade)
            return Migration(before=before, after=after)

        return await self._db.write("migrate", work)

    async def is_current(self) -> bool:
        """Whether the schema is at the newest migration (False on an empty database)."""
        heads = set(ScriptDirectory.from_config(engines.alembic_config()).get_heads())
        async with self._db.translate("is_current"), self._engine.connect() as conn:
            current = await conn.run_sync(engines.current_heads)
        return current == heads

    async def ping(self) -> None:
        async with self._db.translate("ping"), self._engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self._db.close()

    async def usage(
        self, tenant_id: str | None, *, since: datetime, group_by: UsageGroup
    ) -> list[UsageRow]:
        return await self.usage_records.usage(tenant_id, since=since, group_by=group_by)

    async def usage_series(
        self,
        tenant_id: str | None,
        *,
        since: datetime,
        until: datetime,
        step_s: int,
        group_by: SeriesGroup,
    ) -> list[UsagePoint]:
        return await self.usage_records.usage_series(
            tenant_id, since=since, until=until, step_s=step_s, group_by=group_by
        )

    # -- tenants and keys (keys) ----------------------------------------------------------------

    async def ensure_tenant(self, tenant_id: str) -> None:
        await self.keys.ensure_tenant(tenant_id)

    async def add_api_key(self, key: ApiKeyRecord) -> None:
        await self.keys.add_api_key(key)

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        return await self.keys.find_api_key(key_hash)

    async def list_api_keys(self, tenant_id: str | None = None) -> list[ApiKeyRecord]:
        return await self.keys.list_api_keys(tenant_id)

    async def revoke_api_key(self, key_id: str) -> bool:
        return await self.keys.revoke_api_key(key_id)

    async def expire_api_key(self, key_id: str, at: datetime) -> bool:
        return await self.keys.expire_api_key(key_id, at)

    async def touch_api_keys(self, used: Mapping[str, datetime]) -> None:
        await self.keys.touch_api_keys(used)

    # -- the audit log (audit) ------------------------------------------------------------------

    async def append_audit(
        self, rows: Sequence[AuditRow], checkpoints: Sequence[AuditCheckpoint] = ()
    ) -> None:
        await self.audit.append_audit(rows, checkpoints)

    async def list_audit(
        self, query: AuditQuery, *, limit: int = 50, cursor: str | None = None
    ) -> AuditPage:
        return await self.audit.list_audit(query, limit=limit, cursor=cursor)

    async def group_audit(self, query: AuditQuery, by: Sequence[str]) -> list[AuditGroup]:
        return await self.audit.group_audit(query, by)

    async def audit_chains(self) -> list[str]:
        return await self.audit.audit_chains()

    async def audit_chain(
        self, chain_id: str, *, after_seq: int = 0, limit: int = 1000
    ) -> list[AuditRecord]:
        return await self.audit.audit_chain(chain_id, after_seq=after_seq, limit=limit)

    async def audit_checkpoints(self, chain_id: str) -> list[AuditCheckpoint]:
        return await self.audit.audit_checkpoints(chain_id)

    # -- artifacts (artifacts) ------------------------------------------------------------------

    async def add_artifact(self, artifact: ArtifactRecord) -> None:
        await self.artifacts.add_artifact(artifact)

    async def get_artifact(self, tenant_id: str, artifact_id: str) -> ArtifactRecord | None:
        return await self.artifacts.get_artifact(tenant_id, artifact_id)

    async def list_artifacts(
        self,
        tenant_id: str,
        *,
        run_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[ArtifactRecord]:
        return await self.artifacts.list_artifacts(
            tenant_id, run_id=run_id, limit=limit, cursor=cursor
        )

    async def delete_artifact(self, tenant_id: str, artifact_id: str) -> bool:
        return await self.artifacts.delete_artifact(tenant_id, artifact_id)

    # -- tenants' policies (tenants) ------------------------------------------------------------

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        return await self.tenants.get_tenant(tenant_id)

    async def put_tenant_policy(
        self, tenant_id: str, policy: TenantPolicy, *, expected_version: int | None, changed_by: str
    ) -> TenantRecord:
        return await self.tenants.put_tenant_policy(
            tenant_id, policy, expected_version=expected_version, changed_by=changed_by
        )

    async def list_policy_changes(
        self, tenant_id: str, *, before_version: int | None = None, limit: int = 50
    ) -> list[PolicyChange]:
        return await self.tenants.list_policy_changes(
            tenant_id, before_version=before_version, limit=limit
        )

    # -- runs and events (runs) -----------------------------------------------------------------

    async def write_batch(self, runs: Sequence[RunRecord], events: Sequence[Event]) -> None:
        await self.runs.write_batch(runs, events)

    async def get_run(self, tenant_id: str, run_id: str) -> RunRecord | None:
        return await self.runs.get_run(tenant_id, run_id)

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
        return await self.runs.list_runs(
            tenant_id,
            agent=agent,
            status=status,
            session_id=session_id,
            limit=limit,
            cursor=cursor,
            task_id=task_id,
            kind=kind,
            since=since,
            until=until,
            parent_run_id=parent_run_id,
            text=text,
        )

    async def list_events(
        self, tenant_id: str, run_id: str, *, after_seq: int = 0, limit: int = 1000
    ) -> list[Event]:
        return await self.runs.list_events(tenant_id, run_id, after_seq=after_seq, limit=limit)

    async def run_summaries(
        self, tenant_id: str, *, since: datetime, limit: int
    ) -> list[RunSummary]:
        return await self.runs.run_summaries(tenant_id, since=since, limit=limit)

    # -- sessions (sessions) --------------------------------------------------------------------

    async def add_session(self, session: SessionRecord) -> None:
        await self.sessions.add_session(session)

    async def get_session(self, tenant_id: str, session_id: str) -> SessionRecord | None:
        return await self.sessions.get_session(tenant_id, session_id)

    async def list_sessions(
        self,
        tenant_id: str,
        *,
        agent: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[SessionRecord]:
        return await self.sessions.list_sessions(tenant_id, agent=agent, limit=limit, cursor=cursor)

    async def delete_session(self, tenant_id: str, session_id: str) -> bool:
        return await self.sessions.delete_session(tenant_id, session_id)

    # -- tasks (tasks) --------------------------------------------------------------------------

    async def create_task(self, task: TaskRecord) -> tuple[TaskRecord, bool]:
        return await self.tasks.create_task(task)

    async def handed_over(self, task_ids: Sequence[str]) -> None:
        await self.tasks.handed_over(task_ids)

    async def offering(self, task_ids: Sequence[str]) -> None:
        await self.tasks.offering(task_ids)

    async def take_stale_handovers(
        self, *, stale_before: datetime, limit: int = 1000
    ) -> list[TaskRecord]:
        return await self.tasks.take_stale_handovers(stale_before=stale_before, limit=limit)

    async def pending_handovers(
        self, *, after_id: str | None = None, limit: int = 1000
    ) -> list[TaskRecord]:
        return await self.tasks.pending_handovers(after_id=after_id, limit=limit)

    async def get_task(self, tenant_id: str, task_id: str) -> TaskRecord | None:
        return await self.tasks.get_task(tenant_id, task_id)

    async def list_tasks(
        self,
        tenant_id: str,
        *,
        status: TaskStatus | None = None,
        agent: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[TaskRecord]:
        return await self.tasks.list_tasks(
            tenant_id, status=status, agent=agent, limit=limit, cursor=cursor
        )

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
        return await self.tasks.transition_task(
            tenant_id,
            task_id,
            status,
            expected=expected,
            from_offer=from_offer,
            count_attempt=count_attempt,
            detail=detail,
            **fields,
        )

    async def task_transitions(self, tenant_id: str, task_id: str) -> list[TaskTransition]:
        return await self.tasks.task_transitions(tenant_id, task_id)

    # -- traces (traces) ------------------------------------------------------------------------

    async def trace_events(self, tenant_id: str, trace_id: str) -> list[Event]:
        return await self.traces.trace_events(tenant_id, trace_id)

    # -- workers (workers) ----------------------------------------------------------------------

    async def heartbeat(self, worker: WorkerRecord) -> None:
        await self.workers.heartbeat(worker)

    async def list_workers(self, *, since: datetime | None = None) -> list[WorkerRecord]:
        return await self.workers.list_workers(since=since)

    async def prune_workers(self, *, seen_before: datetime) -> int:
        return await self.workers.prune_workers(seen_before=seen_before)

    # -- webhook outbox (webhooks) --------------------------------------------------------------

    async def add_webhook(self, delivery: WebhookDelivery) -> bool:
        return await self.webhooks.add_webhook(delivery)

    async def claim_webhooks(
        self, now: datetime, *, lease_s: float, limit: int
    ) -> list[WebhookDelivery]:
        return await self.webhooks.claim_webhooks(now, lease_s=lease_s, limit=limit)

    async def settle_webhook(
        self,
        task_id: str,
        *,
        status: WebhookStatus,
        next_at: datetime,
        error: str | None = None,
    ) -> None:
        await self.webhooks.settle_webhook(task_id, status=status, next_at=next_at, error=error)

    async def prune_webhooks(self, *, settled_before: datetime) -> int:
        return await self.webhooks.prune_webhooks(settled_before=settled_before)


if TYPE_CHECKING:  # for mypy: each part is its sub-protocol, and the whole a RecordStore

    def _parts(
        keys: SqlKeyRecords,
        tenants: SqlTenantRecords,
        runs: SqlRunRecords,
        sessions: SqlSessionRecords,
        tasks: SqlTaskRecords,
        traces: SqlSpanRecords,
        workers: SqlWorkerRecords,
        webhooks: SqlWebhookRecords,
    ) -> tuple[
        KeyRecords,
        TenantRecords,
        RunRecords,
        SessionRecords,
        TaskRecords,
        SpanRecords,
        WorkerRecords,
        WebhookRecords,
    ]:
        return keys, tenants, runs, sessions, tasks, traces, workers, webhooks

    def _whole(store: SqlRecordStore) -> RecordStore:
        return store
