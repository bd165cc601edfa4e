"""Webhook deliveries waiting to be made: the outbox every worker delivers from.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("task_id", sa.String, nullable=False),
        sa.Column("tenant_id", sa.String, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("event_id", sa.String, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("traceparent", sa.String, nullable=True),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", _TS, nullable=False),
        sa.Column("lease_until", _TS, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("task_id", name="pk_webhook_deliveries"),
    )
    op.create_index(
        "ix_webhook_deliveries_status_next_at", "webhook_deliveries", ["status", "next_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_status_next_at", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
