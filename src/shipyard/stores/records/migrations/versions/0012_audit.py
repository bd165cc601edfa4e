"""The audit log (hash-chained rows, signed checkpoints) and API keys' expiry, last use and
rotation.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_ID = sa.String().with_variant(sa.String(collation="C"), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("expires_at", _TS, nullable=True))
        batch.add_column(sa.Column("last_used_at", _TS, nullable=True))
        batch.add_column(sa.Column("rotated_from", sa.String, nullable=True))
    op.create_table(
        "audit_log",
        sa.Column("id", _ID, nullable=False),
        sa.Column("chain_id", sa.String, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("tenant_id", sa.String, nullable=True),
        sa.Column("key_id", sa.String, nullable=True),
        sa.Column("action", sa.String, nullable=False),
        sa.Column("resource", sa.Text, nullable=False),
        sa.Column("outcome", sa.String, nullable=False),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("scope", sa.String, nullable=True),
        sa.Column("client", sa.String, nullable=True),
        sa.Column("request_id", sa.String, nullable=True),
        sa.Column("trace_id", sa.String, nullable=True),
        sa.Column("detail", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("hash", sa.String, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("uq_audit_log_chain_id_seq", "audit_log", ["chain_id", "seq"], unique=True)
    op.create_table(
        "audit_checkpoints",
        sa.Column("chain_id", sa.String, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("row_seq", sa.BigInteger, nullable=False),
        sa.Column("row_hash", sa.String, nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("final", sa.Boolean, nullable=False),
        sa.Column("mac", sa.String, nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "seq", name="pk_audit_checkpoints"),
    )


def downgrade() -> None:
    op.drop_table("audit_checkpoints")
    op.drop_index("uq_audit_log_chain_id_seq", "audit_log")
    op.drop_table("audit_log")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("rotated_from")
        batch.drop_column("last_used_at")
        batch.drop_column("expires_at")
