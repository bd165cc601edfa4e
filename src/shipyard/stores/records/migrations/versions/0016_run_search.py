"""Run search and spending over time: a partial index of the model calls (``llm.response``
events) by time and tenant, so the dashboard's spending charts and costs page read the calls of
their window (``RecordStore.usage_series``) instead of every event of every run.

Partial (``WHERE type = 'llm.response'``, one event of the several a model call's run writes):
the other events' inserts do not touch it. The runs' text search itself needs no schema: it
scans the runs of a window of their primary key (docs/dashboard.md).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_run_events_model_calls_ts"
MODEL_CALLS = sa.text("type = 'llm.response'")


def upgrade() -> None:
    op.create_index(
        INDEX,
        "run_events",
        ["ts", "tenant_id"],
        sqlite_where=MODEL_CALLS,
        postgresql_where=MODEL_CALLS,
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="run_events")
