"""Run lineage (parent runs, parent spans) and the spans the embedded setup shows traces from.

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


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True)


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("parent_run_id", sa.String, nullable=True))
    with op.batch_alter_table("run_events") as batch:
        batch.add_column(sa.Column("parent_span_id", sa.String, nullable=True))
    op.create_index("ix_runs_parent_run_id", "runs", ["parent_run_id"])
    op.create_table(
        "spans",
        sa.Column("trace_id", sa.String, nullable=False),
        sa.Column("span_id", sa.String, nullable=False),
        sa.Column("parent_span_id", sa.String, nullable=True),
        sa.Column("tenant_id", sa.String, nullable=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("service", sa.String, nullable=False),
        sa.Column("start_ns", sa.BigInteger, nullable=False),
        sa.Column("end_ns", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("status_message", sa.Text, nullable=True),
        sa.Column("attributes", _json(), nullable=False),
        sa.Column("events", _json(), nullable=False),
        sa.PrimaryKeyConstraint("trace_id", "span_id", name="pk_spans"),
    )


def downgrade() -> None:
    op.drop_table("spans")
    op.drop_index("ix_runs_parent_run_id", table_name="runs")
    with op.batch_alter_table("run_events") as batch:
        batch.drop_column("parent_span_id")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("parent_run_id")
