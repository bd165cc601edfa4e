"""Tasks whose hand-over to the broker failed, so a restarted server offers them again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column("handover_pending", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.create_index("ix_tasks_handover_pending", "tasks", ["handover_pending"])


def downgrade() -> None:
    op.drop_index("ix_tasks_handover_pending", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("handover_pending")
