"""Artifacts: runs' named blobs, their bytes in the blob store of their region.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_ID = sa.String().with_variant(sa.String(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("id", _ID, nullable=False),
        sa.Column("tenant_id", sa.String, nullable=False),
        sa.Column("run_id", sa.String, nullable=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("content_type", sa.String, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String, nullable=False),
        sa.Column("region", sa.String, nullable=False),
        sa.Column("blob_key", sa.Text, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_artifacts"),
    )
    op.create_index("ix_artifacts_tenant_id_run_id", "artifacts", ["tenant_id", "run_id"])


def downgrade() -> None:
    op.drop_index("ix_artifacts_tenant_id_run_id", "artifacts")
    op.drop_table("artifacts")
