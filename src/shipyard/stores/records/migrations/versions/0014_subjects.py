"""Subjects: the ``subject`` of runs, sessions and tasks (their metadata's ``subject``) in an
indexed column, so that a subject's rows are found for erasure without reading every row's JSON.

Existing rows get theirs from their metadata (a string ``subject`` only).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("runs", "sessions", "tasks")
MAX_SUBJECT = 256


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("subject", sa.String, nullable=True))
        op.create_index(f"ix_{table}_tenant_id_subject", table, ["tenant_id", "subject"])
        op.execute(_backfill(table))


def _backfill(table: str) -> str:
    if op.get_bind().dialect.name == "postgresql":
        return (
            f"UPDATE {table} SET subject = metadata->>'subject' "
            f"WHERE json_typeof(metadata->'subject') = 'string' "
            f"AND length(metadata->>'subject') BETWEEN 1 AND {MAX_SUBJECT}"
        )
    return (
        f"UPDATE {table} SET subject = json_extract(metadata, '$.subject') "
        f"WHERE json_type(metadata, '$.subject') = 'text' "
        f"AND length(json_extract(metadata, '$.subject')) BETWEEN 1 AND {MAX_SUBJECT}"
    )


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_tenant_id_subject", table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("subject")
