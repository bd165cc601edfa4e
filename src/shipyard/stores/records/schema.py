"""The record tables, as SQLAlchemy Core. ``migrations/versions`` must create exactly these.

Datetimes are stored as UTC and always come back timezone-aware (``UTCDateTime``).
Run ids are compared byte-wise (``COLLATE "C"`` on PostgreSQL, SQLite's default ``BINARY``),
so keyset pagination on the time-ordered ids does not depend on the server's locale.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

BinaryString = sa.String().with_variant(sa.String(collation="C"), "postgresql")
"""Text compared byte by byte, for ids that are sorted and paged on."""


class UTCDateTime(sa.TypeDecorator[datetime]):
    """``TIMESTAMP WITH TIME ZONE``; naive values are taken as UTC; results are aware UTC.

    SQLite has no time zone type: the value is stored as naive UTC text, which sorts correctly.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json() -> sa.JSON:
    # Python None is stored as SQL NULL, not as the JSON text 'null'.
    return sa.JSON(none_as_null=True)


tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("policy", _json(), nullable=True),
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated_at", UTCDateTime, nullable=True),
)
"""A tenant with ``version`` 0 and no ``policy`` has the default policy (``records.policy``)."""

tenant_policy_changes = sa.Table(
    "tenant_policy_changes",
    metadata,
    sa.Column("tenant_id", sa.String, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("policy", _json(), nullable=False),
    sa.Column("changed_by", sa.String, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
)
"""Every version of every tenant's policy, with who made it (append only)."""

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("tenant_id", sa.String, sa.ForeignKey("tenants.id"), nullable=False, index=True),
    sa.Column("key_hash", sa.String, nullable=False, unique=True),
    sa.Column("prefix", sa.String, nullable=False),
    sa.Column("scopes", _json(), nullable=False),
    sa.Column("name", sa.String, nullable=False, server_default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("expires_at", UTCDateTime, nullable=True),
    sa.Column("last_used_at", UTCDateTime, nullable=True),
    sa.Column("rotated_from", sa.String, nullable=True),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", BinaryString, primary_key=True),
    sa.Column("tenant_id", sa.String, nullable=False),
    sa.Column("agent", sa.String, nullable=False),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("input", _json(), nullable=True),
    sa.Column("output", sa.Text, nullable=True),
    sa.Column("error", _json(), nullable=True),
    sa.Column("metadata", _json(), nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("completion_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
    sa.Column("session_id", sa.String, nullable=True),
    sa.Column("task_id", sa.String, nullable=True),
    sa.Column("trace_id", sa.String, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime, nullable=True),
    sa.Column("parent_run_id", sa.String, nullable=True),
    sa.Column("subject", sa.String, nullable=True),
    sa.Index("ix_runs_tenant_id_id", "tenant_id", "id"),
    sa.Index("ix_runs_tenant_id_agent_id", "tenant_id", "agent", "id"),
    sa.Index("ix_runs_tenant_id_status_id", "tenant_id", "status", "id"),
)

run_events = sa.Table(
    "run_events",
    metadata,
    sa.Column("run_id", BinaryString, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("tenant_id", sa.String, nullable=False),
    sa.Column("type", sa.String, nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("agent", sa.String, nullable=False),
    sa.Column("session_id", sa.String, nullable=True),
    sa.Column("task_id", sa.String, nullable=True),
    sa.Column("trace_id", sa.String, nullable=False),
    sa.Column("span_id", sa.String, nullable=False),
    sa.Column("data", _json(), nullable=False),
    sa.Column("parent_span_id", sa.String, nullable=True),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", BinaryString, primary_key=True),
    sa.Column("tenant_id", sa.String, nullable=False),
    sa.Column("agent", sa.String, nullable=False),
    sa.Column("metadata", _json(), nullable=False),
    sa.Column("ttl_s", sa.Float, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("deleted_at", UTCDateTime, nullable=True),
    sa.Column("subject", sa.String, nullable=True),
    sa.Index("ix_sessions_tenant_id_id", "tenant_id", "id"),
)

sa.Index("ix_runs_tenant_id_session_id_id", runs.c.tenant_id, runs.c.session_id, runs.c.id)
sa.Index("ix_runs_parent_run_id", runs.c.parent_run_id)
sa.Index("ix_runs_tenant_id_trace_id", runs.c.tenant_id, runs.c.trace_id)

# The model calls (``llm.response``) by time: the spending charts read a window of them (0016).
MODEL_CALL = "llm.response"
_model_calls = sa.text(f"type = '{MODEL_CALL}'")
sa.Index(
    "ix_run_events_model_calls_ts",
    run_events.c.ts,
    run_events.c.tenant_id,
    sqlite_where=_model_calls,
    postgresql_where=_model_calls,
)

# The ``subject`` of a run, session or task: its metadata's ``subject`` (a string), copied into
# an indexed column so that erasure (``DELETE /v1/subjects/{id}``) finds its rows (0014).
sa.Index("ix_runs_tenant_id_subject", runs.c.tenant_id, runs.c.subject)
sa.Index("ix_sessions_tenant_id_subject", sessions.c.tenant_id, sessions.c.subject)


tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", BinaryString, primary_key=True),
    sa.Column("tenant_id", sa.String, nullable=False),
    sa.Column("agent", sa.String, nullable=False),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("input", _json(), nullable=True),
    sa.Column("metadata", _json(), nullable=False),
    sa.Column("session_id", sa.String, nullable=True),
    sa.Column("webhook_url", sa.Text, nullable=True),
    sa.Column("idempotency_key", sa.String, nullable=True),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("deadline", UTCDateTime, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("run_id", sa.String, nullable=True),
    sa.Column("output", sa.Text, nullable=True),
    sa.Column("error", _json(), nullable=True),
    sa.Column("prompt_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("completion_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("handover_pending", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("handover_at", UTCDateTime, nullable=True),
    sa.Column("offer", sa.String, nullable=True),
    sa.Column("subject", sa.String, nullable=True),
    sa.Index("ix_tasks_tenant_id_id", "tenant_id", "id"),
    sa.Index("ix_tasks_tenant_id_status_id", "tenant_id", "status", "id"),
    sa.Index("uq_tasks_tenant_id_idempotency_key", "tenant_id", "idempotency_key", unique=True),
)

# What the retention sweep deletes by age, per tenant (``stores.records.lifecycle``, 0015).
sa.Index("ix_runs_tenant_id_created_at", runs.c.tenant_id, runs.c.created_at)
sa.Index("ix_run_events_tenant_id_ts", run_events.c.tenant_id, run_events.c.ts)
sa.Index("ix_sessions_tenant_id_created_at", sessions.c.tenant_id, sessions.c.created_at)
sa.Index("ix_tasks_tenant_id_updated_at", tasks.c.tenant_id, tasks.c.updated_at)

_pending = tasks.c.handover_pending.is_(True)
sa.Index("ix_tasks_tenant_id_subject", tasks.c.tenant_id, tasks.c.subject)
sa.Index(  # holds only the tasks not yet handed over: few at any time (0008)
    "ix_tasks_handover_pending", tasks.c.id, sqlite_where=_pending, postgresql_where=_pending
)

task_transitions = sa.Table(
    "task_transitions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task_id", BinaryString, nullable=False, index=True),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("detail", _json(), nullable=False),
)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("host", sa.String, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("concurrency", sa.Integer, nullable=False),
    sa.Column("running", sa.Integer, nullable=False),
    sa.Column("succeeded", sa.Integer, nullable=False),
    sa.Column("failed", sa.Integer, nullable=False),
    sa.Column("heartbeat_s", sa.Float, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
    sa.Column("stopped_at", UTCDateTime, nullable=True),
)
"""Task workers as their heartbeats report them (not per tenant: workers serve all tenants)."""

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("task_id", sa.String, primary_key=True),
    sa.Column("tenant_id", sa.String, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("event_id", sa.String, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("traceparent", sa.String, nullable=True),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_at", UTCDateTime, nullable=False),
    sa.Column("lease_until", UTCDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_webhook_deliveries_status_next_at", "status", "next_at"),
    sa.Index("ix_webhook_deliveries_tenant_id_updated_at", "tenant_id", "updated_at"),  # 0015
)
"""The webhook outbox: one delivery per task outcome, made by whichever worker claims it."""

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BinaryString, primary_key=True),
    sa.Column("chain_id", sa.String, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("tenant_id", sa.String, nullable=True),
    sa.Column("key_id", sa.String, nullable=True),
    sa.Column("action", sa.String, nullable=False),
    sa.Column("resource", sa.Text, nullable=False),
    sa.Column("outcome", sa.String, nullable=False),
    sa.Column("status", sa.Integer, nullable=True),
    sa.Column("scope", sa.String, nullable=True),
    sa.Column("client", sa.String, nullable=True),
    sa.Column("request_id", sa.String, nullable=True),
    sa.Column("trace_id", sa.String, nullable=True),
    sa.Column("detail", _json(), nullable=True),
    sa.Column("hash", sa.String, nullable=False),
    sa.Index("uq_audit_log_chain_id_seq", "chain_id", "seq", unique=True),
)
"""Append-only, one hash chain per writing process (``chain_id``, ``seq`` from 1); ids are
time-ordered, so a time range is an id range (``stores.records.audit``). Two indexes only, for a
cheap insert: listings walk the ids newest first and filter."""

audit_checkpoints = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("chain_id", sa.String, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("row_seq", sa.BigInteger, nullable=False),
    sa.Column("row_hash", sa.String, nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("final", sa.Boolean, nullable=False),
    sa.Column("mac", sa.String, nullable=False),
)
"""Signed (HMAC) heads of the audit chains: what an attacker without the key cannot forge."""

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("id", BinaryString, primary_key=True),
    sa.Column("tenant_id", sa.String, nullable=False),
    sa.Column("run_id", sa.String, nullable=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("content_type", sa.String, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String, nullable=False),
    sa.Column("region", sa.String, nullable=False),
    sa.Column("blob_key", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_artifacts_tenant_id_run_id", "tenant_id", "run_id"),
    sa.Index("ix_artifacts_tenant_id_created_at", "tenant_id", "created_at"),  # 0015
)
"""Artifacts' records; their bytes are in the blob store of ``region`` under ``blob_key``."""
