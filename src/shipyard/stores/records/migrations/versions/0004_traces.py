"""Run lineage (parent runs, parent spans) and runs by trace (the embedded trace view reads a
trace's runs and their events).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("parent_run_id", sa.String, nullable=True))
    with op.batch_alter_table("run_events") as batch:
        batch.add_column(sa.Column("parent_span_id", sa.String, nullable=True))
    op.create_index("ix_runs_parent_run_id", "runs", ["parent_run_id"])
    op.create_index("ix_runs_tenant_id_trace_id", "runs", ["tenant_id", "trace_id"])


def downgrade() -> None:
    op.drop_index("ix_runs_tenant_id_trace_id", table_name="runs")
    op.drop_index("ix_runs_parent_run_id", table_name="runs")
    with op.batch_alter_table("run_events") as batch:
        batch.drop_column("parent_span_id")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("parent_run_id")
