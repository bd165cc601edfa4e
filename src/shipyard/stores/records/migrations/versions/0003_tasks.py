"""Tasks and their transitions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_ID = sa.String().with_variant(sa.String(collation="C"), "postgresql")


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True)


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", _ID, nullable=False),
        sa.Column("tenant_id", sa.String, nullable=False),
        sa.Column("agent", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("input", _json(), nullable=True),
        sa.Column("metadata", _json(), nullable=False),
        sa.Column("session_id", sa.String, nullable=True),
        sa.Column("webhook_url", sa.Text, nullable=True),
        sa.Column("idempotency_key", sa.String, nullable=True),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("deadline", _TS, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("run_id", sa.String, nullable=True),
        sa.Column("output", sa.Text, nullable=True),
        sa.Column("error", _json(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
    )
    op.create_index("ix_tasks_tenant_id_id", "tasks", ["tenant_id", "id"])
    op.create_index("ix_tasks_tenant_id_status_id", "tasks", ["tenant_id", "status", "id"])
    op.create_index(
        "uq_tasks_tenant_id_idempotency_key", "tasks", ["tenant_id", "idempotency_key"], unique=True
    )
    op.create_table(
        "task_transitions",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("task_id", _ID, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("detail", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_task_transitions"),
    )
    op.create_index("ix_task_transitions_task_id", "task_transitions", ["task_id"])


def downgrade() -> None:
    op.drop_index("ix_task_transitions_task_id", table_name="task_transitions")
    op.drop_table("task_transitions")
    op.drop_index("uq_tasks_tenant_id_idempotency_key", table_name="tasks")
    op.drop_index("ix_tasks_tenant_id_status_id", table_name="tasks")
    op.drop_index("ix_tasks_tenant_id_id", table_name="tasks")
    op.drop_table("tasks")
