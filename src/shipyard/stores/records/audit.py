"""``SqlAuditRecords``: the audit log (``audit_base.AuditRecords``) on the SQL record store.

Rows arrive in batches from each process's writer and go in with one statement (prepared, on a
SQLite file), inside the group commit. Ids are time-ordered (``aud_`` and the millisecond in
hex), so a time range is a range of the primary key and listings page on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from shipyard.errors import InvalidInput
from shipyard.stores.records._database import Database
from shipyard.stores.records.audit_base import (
    AuditCheckpoint,
    AuditGroup,
    AuditPage,
    AuditQuery,
    AuditRecord,
    AuditRow,
)
from shipyard.stores.records.schema import audit_checkpoints, audit_log

__all__ = ["GROUPABLE", "SqlAuditRecords", "audit_id_floor"]

GROUPABLE = frozenset(
    {"tenant_id", "key_id", "action", "resource", "outcome", "status", "scope", "client"}
)
_ID_PREFIX = "aud_"


def audit_id_floor(at: datetime) -> str:
    """The smallest id of a row made at ``at`` or later."""
    return f"{_ID_PREFIX}{int(at.timestamp() * 1000):012x}"


class SqlAuditRecords:
    """``AuditRecords`` over a shared ``Database``."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._insert_rows = db.insert(audit_log).on_conflict_do_nothing(index_elements=["id"])
        self._insert_checkpoints = db.insert(audit_checkpoints).on_conflict_do_nothing(
            index_elements=["chain_id", "seq"]
        )
        db.prepare(self._insert_rows)
        db.prepare(self._insert_checkpoints)  # one a second at most, but a whole compile each

    async def append_audit(
        self, rows: Sequence[AuditRow], checkpoints: Sequence[AuditCheckpoint] = ()
    ) -> None:
        row_dicts = list(rows)
        checkpoint_dicts = [c.model_dump() for c in checkpoints]
        if not row_dicts and not checkpoint_dicts:
            return

        async def work(conn: AsyncConnection) -> None:
            if row_dicts:
                await conn.execute(self._insert_rows, row_dicts)
            if checkpoint_dicts:
                await conn.execute(self._insert_checkpoints, checkpoint_dicts)

        await self._db.write("append_audit", work)

    async def list_audit(
        self, query: AuditQuery, *, limit: int = 50, cursor: str | None = None
    ) -> AuditPage:
        page = await self._db.page(
            "list_audit", _where(audit_log.select(), query), audit_log.c.id, AuditRecord, limit,
            cursor,
        )  # fmt: skip
        return AuditPage(items=page.items, next_cursor=page.next_cursor)

    async def group_audit(self, query: AuditQuery, by: Sequence[str]) -> list[AuditGroup]:
        unknown = sorted(set(by) - GROUPABLE)
        if unknown or not by:
            raise InvalidInput(f"cannot group the audit log by {unknown or 'nothing'}")
        columns = [audit_log.c[name] for name in by]
        count = sa.func.count().label("count")
        select: sa.Select[Any] = sa.select(
            *columns,
            count,
            sa.func.min(audit_log.c.at).label("first_at"),
            sa.func.max(audit_log.c.at).label("last_at"),
        )
        grouped = _where(select, query).group_by(*columns).order_by(count.desc(), *columns)
        rows = await self._db.fetch("group_audit", grouped)
        return [_group(row, by) for row in rows]

    async def audit_chains(self) -> list[str]:
        chains: Any = sa.union(
            sa.select(audit_log.c.chain_id).distinct(),
            sa.select(audit_checkpoints.c.chain_id).distinct(),
        ).subquery()
        query: sa.Select[Any] = sa.select(chains.c.chain_id).order_by(chains.c.chain_id)
        rows = await self._db.fetch("audit_chains", query)
        return [row["chain_id"] for row in rows]

    async def audit_chain(
        self, chain_id: str, *, after_seq: int = 0, limit: int = 1000
    ) -> list[AuditRecord]:
        c = audit_log.c
        query = (
            audit_log.select()
            .where(c.chain_id == chain_id, c.seq > after_seq)
            .order_by(c.seq)
            .limit(limit)
        )
        return [AuditRecord.model_validate(r) for r in await self._db.fetch("audit_chain", query)]

    async def audit_checkpoints(self, chain_id: str) -> list[AuditCheckpoint]:
        c = audit_checkpoints.c
        query = audit_checkpoints.select().where(c.chain_id == chain_id).order_by(c.seq)
        rows = await self._db.fetch("audit_checkpoints", query)
        return [AuditCheckpoint.model_validate(row) for row in rows]


def _where(select: sa.Select[Any], query: AuditQuery) -> sa.Select[Any]:
    c = audit_log.c
    equal = {
        "tenant_id": query.tenant_id,
        "key_id": query.key_id,
        "action": query.action,
        "scope": query.scope,
    }
    for name, value in equal.items():
        if value is not None:
            select = select.where(c[name] == value)
    if query.action_prefix is not None:
        select = select.where(c.action.startswith(query.action_prefix, autoescape=True))
    if query.outcomes:
        select = select.where(c.outcome.in_(query.outcomes))
    if query.since is not None:
        select = select.where(c.id >= audit_id_floor(query.since))
    if query.until is not None:
        select = select.where(c.id < audit_id_floor(query.until))
    return select


def _group(row: dict[str, Any], by: Sequence[str]) -> AuditGroup:
    return AuditGroup(
        values={name: row[name] for name in by},
        count=row["count"],
        first_at=row["first_at"],
        last_at=row["last_at"],
    )
