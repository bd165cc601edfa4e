"""Retention indexes: the retention sweep deletes a tenant's rows older than its period, by
``created_at`` (runs, sessions, artifacts), ``updated_at`` (tasks, webhook deliveries) or ``ts``
(run events). A ``(tenant_id, <age column>)`` index on each finds those rows without reading the
tenant's whole history (``stores.records.lifecycle``).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "runs": "created_at",
    "run_events": "ts",
    "tasks": "updated_at",
    "sessions": "created_at",
    "artifacts": "created_at",
    "webhook_deliveries": "updated_at",
}


def upgrade() -> None:
    for table, column in INDEXES.items():
        op.create_index(f"ix_{table}_tenant_id_{column}", table, ["tenant_id", column])


def downgrade() -> None:
    for table, column in INDEXES.items():
        op.drop_index(f"ix_{table}_tenant_id_{column}", table)
