"""Sessions, and runs by session.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_ID = sa.String().with_variant(sa.String(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("tenant_id", sa.String, nullable=False),
        sa.Column("agent", sa.String, nullable=False),
        sa.Column("metadata", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("ttl_s", sa.Float, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("deleted_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
    )
    op.create_index("ix_sessions_tenant_id_id", "sessions", ["tenant_id", "id"])
    op.create_index("ix_runs_tenant_id_session_id_id", "runs", ["tenant_id", "session_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_runs_tenant_id_session_id_id", table_name="runs")
    op.drop_index("ix_sessions_tenant_id_id", table_name="sessions")
    op.drop_table("sessions")
