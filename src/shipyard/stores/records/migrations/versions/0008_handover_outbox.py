"""Every task is recorded with ``handover_pending`` set, cleared once the broker has its message
(``runtime.handover``): the index holds only the pending ones.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PENDING = sa.column("handover_pending", sa.Boolean).is_(True)


def upgrade() -> None:
    op.drop_index("ix_tasks_handover_pending", table_name="tasks")
    op.create_index(
        "ix_tasks_handover_pending",
        "tasks",
        ["id"],
        sqlite_where=_PENDING,
        postgresql_where=_PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_handover_pending", table_name="tasks")
    op.create_index("ix_tasks_handover_pending", "tasks", ["handover_pending"])
