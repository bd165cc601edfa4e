"""The record store: durable rows for tenants, API keys, runs and run events.

Narrow protocols — keys, tenants, runs, sessions, tasks, spans (a trace's events), workers,
webhooks, the audit log (``audit_base``) — that one backend implements together as ``RecordStore``.
Every read takes a ``tenant_id``: a row of another tenant is simply not found.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from shipyard.stores.records.artifacts_base import ArtifactRecords
from shipyard.stores.records.audit_base import AuditRecords
from shipyard.stores.records.lifecycle_base import LifecycleRecords
from shipyard.stores.records.policy import TenantPolicy
from shipyard.stores.records.usage_base import UsageRecords
from shipyard.telemetry.events import Event

RunStatus = Literal["running", "succeeded", "failed"]
Scope = Literal["admin", "invoke", "read", "pii:reveal"]
RunKind = Literal["invoke", "session", "task"]
"""How a run was started: a stateless invoke (or a child run), a session's turn, a task."""
TaskStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "dead"]
FINAL_TASK_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "dead"})


class Migration(BaseModel):
    """What :meth:`RecordStore.migrate` did: the schema's revision before (``None``: there was no
    schema) and after."""

    model_config = ConfigDict(frozen=True)

    before: str | None
    after: str


class ApiKeyRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    tenant_id: str
    key_hash: str = Field(
        description="sha256 hex of the secret key; the key itself is never stored"
    )
    prefix: str = Field(description="First characters of the key, to recognise it in listings")
    scopes: tuple[Scope, ...]
    name: str = ""
    created_at: datetime
    revoked_at: datetime | None = None
    expires_at: datetime | None = None
    """Past this the key answers 401 (``None``: never expires)."""
    last_used_at: datetime | None = None
    """When it last authenticated a request, to within ``KEY_USED_EVERY_S`` (batched)."""
    rotated_from: str | None = None
    """The key this one replaced (``shipyard keys rotate``)."""


class RunRecord(BaseModel):
    """A run as stored: its final state once it has finished."""

    model_config = ConfigDict(frozen=True)

    id: str
    tenant_id: str
    agent: str
    status: RunStatus
    input: Any = None
    output: str | None = None
    error: dict[str, Any] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    session_id: str | None = None
    task_id: str | None = None
    trace_id: str | None = None
    created_at: datetime
    ended_at: datetime | None = None
    parent_run_id: str | None = None
    """The run whose agent started this one (an agent called as a tool or a task)."""


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What the dashboard's numbers need of a run: no input, output or metadata to decode."""

    agent: str
    status: RunStatus
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    created_at: datetime
    ended_at: datetime | None


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a listing; pass ``next_cursor`` back to get the next page (None at the end)."""

    items: list[T]
    next_cursor: str | None = None


class SessionRecord(BaseModel):
    """A session as the records keep it: who, which agent, when. Its turns are runs carrying
    its id; the live history is in the state store and may expire, this row does not."""

    model_config = ConfigDict(frozen=True)

    id: str
    tenant_id: str
    agent: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    ttl_s: float
    created_at: datetime
    deleted_at: datetime | None = None


class TaskRecord(BaseModel):
    """A task: what was asked, where it is, and its result once it has one."""

    model_config = ConfigDict(frozen=True)

    id: str
    tenant_id: str
    agent: str
    status: TaskStatus
    input: Any = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    session_id: str | None = None
    webhook_url: str | None = None
    idempotency_key: str | None = None
    priority: int = 0
    deadline: datetime | None = None
    attempts: int = 0
    run_id: str | None = None
    output: str | None = None
    error: dict[str, Any] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    created_at: datetime
    updated_at: datetime
    handover_pending: bool = False
    """The broker has not taken the task's message yet (``runtime.handover``)."""
    handover_at: datetime | None = None
    """When a process still trying to hand the task over last said so, or a sweep took it over
    (``None``: since it was created)."""
    offer: str | None = None
    """The id of the message whose delivery started the task's current (or last) run."""


class TaskTransition(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: TaskStatus
    at: datetime
    detail: dict[str, Any] = Field(default_factory=dict)


class KeyRecords(Protocol):
    async def ensure_tenant(self, tenant_id: str) -> None: ...
    async def add_api_key(self, key: ApiKeyRecord) -> None: ...
    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None: ...
    async def list_api_keys(self, tenant_id: str | None = None) -> list[ApiKeyRecord]: ...
    async def revoke_api_key(self, key_id: str) -> bool: ...

    async def expire_api_key(self, key_id: str, at: datetime) -> bool:
        """Make the key expire at ``at`` unless it expires sooner; False if there is no such key."""
        ...

    async def touch_api_keys(self, used: Mapping[str, datetime]) -> None:
        """Record when each key (by id) was last used (a later time only)."""
        ...


class RunRecords(Protocol):
    async def write_batch(self, runs: Sequence[RunRecord], events: Sequence[Event]) -> None:
        """Upsert ``runs`` (by id) and insert ``events`` in one transaction; idempotent on retry."""
        ...

    async def get_run(self, tenant_id: str, run_id: str) -> RunRecord | None: ...

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
        """Newest first. ``parent_run_id``: the runs that run started (agents it called, its
        tasks' runs). ``kind``: how the run was started (``RunKind``); ``since`` (inclusive)
        and ``until`` (exclusive) bound when it was created, read from its time-ordered id (to
        the millisecond), so that a window is a range of the primary key's index. ``text``: runs
        whose input (as stored, JSON) or output contains it, ignoring case (ASCII letters on
        SQLite): a scan of the rows the other filters leave, so give it a window of time."""
        ...

    async def list_events(
        self, tenant_id: str, run_id: str, *, after_seq: int = 0, limit: int = 1000
    ) -> list[Event]:
        """In ``seq`` order."""
        ...

    async def run_summaries(
        self, tenant_id: str, *, since: datetime, limit: int
    ) -> list[RunSummary]:
        """The tenant's runs created at or after ``since`` (read from their ids, as
        ``list_runs``' window), newest first, at most ``limit`` (1..100,000)."""
        ...


class SessionRecords(Protocol):
    async def add_session(self, session: SessionRecord) -> None: ...

    async def get_session(self, tenant_id: str, session_id: str) -> SessionRecord | None:
        """The session, deleted or not (``deleted_at`` tells)."""
        ...

    async def list_sessions(
        self,
        tenant_id: str,
        *,
        agent: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[SessionRecord]:
        """Sessions not deleted, newest first."""
        ...

    async def delete_session(self, tenant_id: str, session_id: str) -> bool:
        """Mark deleted (the first time only); False if there is no such session."""
        ...


class TaskRecords(Protocol):
    async def handed_over(self, task_ids: Sequence[str]) -> None:
        """The broker took these tasks' messages: their ``handover_pending`` is cleared."""
        ...

    async def offering(self, task_ids: Sequence[str]) -> None:
        """This process is still trying to hand these tasks over (their ``handover_at`` is
        now): no sweep takes them over meanwhile."""
        ...

    async def take_stale_handovers(
        self, *, stale_before: datetime, limit: int = 1000
    ) -> list[TaskRecord]:
        """Tasks of any tenant and status still pending hand-over that no process has said it
        is handing over since ``stale_before`` (nor since it was created), oldest first; each is
        marked offered now, so that one taker takes it (concurrent takers get other tasks)."""
        ...

    async def pending_handovers(
        self, *, after_id: str | None = None, limit: int = 1000
    ) -> list[TaskRecord]:
        """Tasks of any tenant and status whose hand-over to the broker is still pending, by id,
        from after ``after_id``."""
        ...

    async def create_task(self, task: TaskRecord) -> tuple[TaskRecord, bool]:
        """Store a queued task and its first transition; with an ``idempotency_key`` already
        used by the tenant, the existing task instead. ``(task, created)``."""
        ...

    async def get_task(self, tenant_id: str, task_id: str) -> TaskRecord | None: ...

    async def list_tasks(
        self,
        tenant_id: str,
        *,
        status: TaskStatus | None = None,
        agent: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[TaskRecord]:
        """Newest first."""
        ...

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
        """Move the task to ``status`` (and set ``fields``) only if its status is one of
        ``expected`` (and, with ``from_offer``, its ``offer`` is that one or unset), recording the
        move with a timestamp; None if it was not. ``count_attempt``: ``attempts`` goes up by
        one in the same statement (a worker's claim: every delivery counts)."""
        ...

    async def task_transitions(self, tenant_id: str, task_id: str) -> list[TaskTransition]:
        """Every move, oldest first."""
        ...


class WorkerRecord(BaseModel):
    """A task worker as its last heartbeat reported it."""

    model_config = ConfigDict(frozen=True)

    name: str
    host: str
    pid: int
    concurrency: int
    running: int = Field(description="Tasks in flight at the last heartbeat.")
    succeeded: int = 0
    failed: int = Field(0, description="Tasks that ended failed or dead on this worker.")
    heartbeat_s: float = Field(description="The worker's heartbeat interval.")
    started_at: datetime
    last_seen: datetime
    stopped_at: datetime | None = None


class WorkerRecords(Protocol):
    async def heartbeat(self, worker: WorkerRecord) -> None:
        """Upsert the worker's row (by name)."""
        ...

    async def list_workers(self, *, since: datetime | None = None) -> list[WorkerRecord]:
        """Workers seen at or after ``since`` (all without it), most recently seen first."""
        ...

    async def prune_workers(self, *, seen_before: datetime) -> int:
        """Delete the workers last seen before ``seen_before``; how many were deleted."""
        ...


WebhookStatus = Literal["pending", "delivered", "failed"]


class WebhookDelivery(BaseModel):
    """A task's webhook in the outbox: kept until delivered or given up, so a worker that dies
    while retrying it loses nothing (another worker carries on)."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    tenant_id: str
    url: str
    event_id: str
    body: str
    traceparent: str | None = None
    status: WebhookStatus = "pending"
    attempts: int = 0
    next_at: datetime
    lease_until: datetime | None = None
    last_error: str | None = None
    created_at: datetime
    updated_at: datetime


class WebhookRecords(Protocol):
    async def add_webhook(self, delivery: WebhookDelivery) -> bool:
        """Put a delivery in the outbox; False (and nothing changed) if the task has one."""
        ...

    async def claim_webhooks(
        self, now: datetime, *, lease_s: float, limit: int
    ) -> list[WebhookDelivery]:
        """Pending deliveries due by ``now`` and not leased, each leased to the caller for
        ``lease_s`` with its attempt counted (a compare-and-set: two claimers never share one)."""
        ...

    async def settle_webhook(
        self,
        task_id: str,
        *,
        status: WebhookStatus,
        next_at: datetime,
        error: str | None = None,
    ) -> None:
        """Record an attempt's outcome and release the lease."""
        ...

    async def prune_webhooks(self, *, settled_before: datetime) -> int:
        """Delete the delivered and failed deliveries last updated before ``settled_before``
        (pending ones stay, however old); how many were deleted."""
        ...


class SpanRecords(Protocol):
    async def trace_events(self, tenant_id: str, trace_id: str) -> list[Event]:
        """The stored events of the tenant's runs in a trace, by run and ``seq``; empty if it
        has none.

        Spans are not written separately: telemetry builds them from these events through the
        trace sink's own mapping (``telemetry.tracing.spans_of``), so keeping them costs the runs
        nothing.
        """
        ...


class TenantRecord(BaseModel):
    """A tenant and its policy. ``version`` 0: the tenant has no policy of its own yet (it
    came with a key), so the default one applies; every change adds one."""

    model_config = ConfigDict(frozen=True)

    id: str
    policy: TenantPolicy = Field(default_factory=TenantPolicy)
    version: int = 0
    created_at: datetime
    updated_at: datetime | None = None


class PolicyChange(BaseModel):
    """One change of a tenant's policy: the whole document as it became, and who made it."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    version: int
    policy: TenantPolicy
    changed_by: str = Field(description="The API key's id, or ``cli:<OS user>``.")
    at: datetime


class TenantRecords(Protocol):
    async def get_tenant(self, tenant_id: str) -> TenantRecord | None: ...

    async def put_tenant_policy(
        self, tenant_id: str, policy: TenantPolicy, *, expected_version: int | None, changed_by: str
    ) -> TenantRecord:
        """Store ``policy`` as the tenant's next version (creating the tenant if needed) and
        record the change, in one transaction; raise ``PolicyConflict`` if ``expected_version``
        is given and is not the current one (0: the tenant has no policy yet)."""
        ...

    async def list_policy_changes(
        self, tenant_id: str, *, before_version: int | None = None, limit: int = 50
    ) -> list[PolicyChange]:
        """Newest first, those before ``before_version``."""
        ...


class RecordStore(
    UsageRecords,
    ArtifactRecords,
    AuditRecords,
    KeyRecords,
    TenantRecords,
    RunRecords,
    SessionRecords,
    TaskRecords,
    SpanRecords,
    WorkerRecords,
    WebhookRecords,
    Protocol,
):
    @property
    def lifecycle(self) -> LifecycleRecords:
        """Rows by age and by subject: the retention sweeper's and erasure's."""
        ...

    async def migrate(self) -> Migration:
        """Bring the schema to the newest Alembic revision; say from which one."""
        ...

    async def ping(self) -> None:
        """Raise ``StoreError`` unless the store answers."""
        ...

    async def close(self) -> None: ...
