"""``SqlTenantRecords``: tenants' policies and their changes (``TenantRecords``), over the record
store's engine and group commit.

A write is a compare-and-set on the tenant's ``version`` (``UPDATE ... WHERE version = ?``), so
two writers that read the same version cannot both succeed, on SQLite or PostgreSQL; the change
row goes in the same transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from shipyard.errors import PolicyConflict
from shipyard.stores.records._database import Database
from shipyard.stores.records.base import PolicyChange, TenantRecord
from shipyard.stores.records.policy import TenantPolicy
from shipyard.stores.records.schema import tenant_policy_changes, tenants

__all__ = ["SqlTenantRecords"]

MAX_CHANGES = 500


class SqlTenantRecords:
    """``TenantRecords`` over a shared ``Database``."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._ensure = db.insert(tenants).on_conflict_do_nothing(index_elements=["id"])

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        rows = await self._db.fetch("get_tenant", tenants.select().where(tenants.c.id == tenant_id))
        return _tenant(rows[0]) if rows else None

    async def put_tenant_policy(
        self, tenant_id: str, policy: TenantPolicy, *, expected_version: int | None, changed_by: str
    ) -> TenantRecord:
        document = policy.model_dump(mode="json")

        async def work(conn: AsyncConnection) -> TenantRecord:
            now = datetime.now(UTC)
            await conn.execute(self._ensure, {"id": tenant_id, "created_at": now})
            read = await conn.execute(sa.select(tenants.c.version).where(tenants.c.id == tenant_id))
            current = read.scalar_one()
            if expected_version is not None and expected_version != current:
                raise _conflict(tenant_id, expected_version, current)
            stored = await conn.execute(
                tenants.update()
                .where(tenants.c.id == tenant_id, tenants.c.version == current)
                .values(policy=document, version=tenants.c.version + 1, updated_at=now)
                .returning(*tenants.c)
            )
            row = stored.mappings().first()
            if row is None:  # changed between the read and the write (another process)
                raise _conflict(tenant_id, expected_version, current)
            await conn.execute(
                tenant_policy_changes.insert(),
                {"tenant_id": tenant_id, "version": row["version"], "policy": document}
                | {"changed_by": changed_by, "at": now},
            )
            return _tenant(dict(row))

        return await self._db.write("put_tenant_policy", work)

    async def list_policy_changes(
        self, tenant_id: str, *, before_version: int | None = None, limit: int = 50
    ) -> list[PolicyChange]:
        c = tenant_policy_changes.c
        query = tenant_policy_changes.select().where(c.tenant_id == tenant_id)
        if before_version is not None:
            query = query.where(c.version < before_version)
        query = query.order_by(c.version.desc()).limit(min(max(limit, 1), MAX_CHANGES))
        rows = await self._db.fetch("list_policy_changes", query)
        return [PolicyChange.model_validate(row) for row in rows]


def _tenant(row: dict[str, Any]) -> TenantRecord:
    return TenantRecord.model_validate(row | {"policy": row.get("policy") or {}})


def _conflict(tenant_id: str, expected: int | None, current: int) -> PolicyConflict:
    why = f"not {expected}" if expected is not None else "and changed while this change was made"
    return PolicyConflict(
        f"tenant {tenant_id!r}'s policy is at version {current}, {why}: read it again",
        details={"tenant_id": tenant_id, "expected_version": expected, "version": current},
    )
