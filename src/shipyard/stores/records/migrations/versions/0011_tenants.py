"""Tenant policies: a typed, versioned document per tenant, and every change with who made it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def _json() -> sa.JSON:
    return sa.JSON(none_as_null=True)


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("policy", _json(), nullable=True))
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("updated_at", _TS, nullable=True))
    op.create_table(
        "tenant_policy_changes",
        sa.Column("tenant_id", sa.String, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("policy", _json(), nullable=False),
        sa.Column("changed_by", sa.String, nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "version", name="pk_tenant_policy_changes"),
    )


def downgrade() -> None:
    op.drop_table("tenant_policy_changes")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("updated_at")
        batch.drop_column("version")
        batch.drop_column("policy")
