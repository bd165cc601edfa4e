"""Tenants, API keys, runs and run events.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_ID = sa.String().with_variant(sa.String(collation="C"), "postgresql")


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True)


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String, nullable=False),
        sa.Column("tenant_id", sa.String, nullable=False),
        sa.Column("key_hash", sa.String, nullable=False),
        sa.Column("prefix", sa.String, nullable=False),
        sa.Column("scopes", _json(), nullable=False),
        sa.Column("name", sa.String, nullable=False, server_default=""),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_api_keys_tenant_id_tenants"
        ),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"])
    op.create_table(
        "runs",
        sa.Column("id", _ID, nullable=False),
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
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("ended_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_tenant_id_id", "runs", ["tenant_id", "id"])
    op.create_index("ix_runs_tenant_id_agent_id", "runs", ["tenant_id", "agent", "id"])
    op.create_index("ix_runs_tenant_id_status_id", "runs", ["tenant_id", "status", "id"])
    op.create_table(
        "run_events",
        sa.Column("run_id", _ID, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("tenant_id", sa.String, nullable=False),
        sa.Column("type", sa.String, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("agent", sa.String, nullable=False),
        sa.Column("session_id", sa.String, nullable=True),
        sa.Column("task_id", sa.String, nullable=True),
        sa.Column("trace_id", sa.String, nullable=False),
        sa.Column("span_id", sa.String, nullable=False),
        sa.Column("data", _json(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "seq", name="pk_run_events"),
    )


def downgrade() -> None:
    op.drop_table("run_events")
    op.drop_index("ix_runs_tenant_id_status_id", table_name="runs")
    op.drop_index("ix_runs_tenant_id_agent_id", table_name="runs")
    op.drop_index("ix_runs_tenant_id_id", table_name="runs")
    op.drop_table("runs")
    op.drop_index("ix_api_keys_tenant_id", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("tenants")
