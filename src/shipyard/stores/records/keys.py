"""``SqlKeyRecords``: tenants and API keys (``base.KeyRecords``) on the SQL record store."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from shipyard.stores.records._database import Database
from shipyard.stores.records.base import ApiKeyRecord
from shipyard.stores.records.schema import UTCDateTime, api_keys, tenants

__all__ = ["SqlKeyRecords"]


class SqlKeyRecords:
    """``KeyRecords`` over a shared ``Database``."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._insert_tenant_stmt = db.insert(tenants).on_conflict_do_nothing(index_elements=["id"])
        at = sa.bindparam("at", type_=UTCDateTime())
        self._touch_stmt = (
            api_keys.update()
            .where(api_keys.c.id == sa.bindparam("key"))
            .where(sa.or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at < at))
            .values(last_used_at=at)
        )

    async def ensure_tenant(self, tenant_id: str) -> None:
        await self._db.write("ensure_tenant", lambda conn: self._ensure_tenant(conn, tenant_id))

    async def add_api_key(self, key: ApiKeyRecord) -> None:
        """Store a key, creating its tenant if needed."""

        async def work(conn: AsyncConnection) -> None:
            await self._ensure_tenant(conn, key.tenant_id)
            await conn.execute(api_keys.insert().values(key.model_dump()))

        await self._db.write("add_api_key", work)

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        """The key with this hash, of any tenant, revoked or not."""
        query = api_keys.select().where(api_keys.c.key_hash == key_hash)
        rows = await self._db.fetch("find_api_key", query)
        return ApiKeyRecord.model_validate(rows[0]) if rows else None

    async def list_api_keys(self, tenant_id: str | None = None) -> list[ApiKeyRecord]:
        """Keys of one tenant, or of all tenants; oldest first."""
        query = api_keys.select().order_by(api_keys.c.created_at, api_keys.c.id)
        if tenant_id is not None:
            query = query.where(api_keys.c.tenant_id == tenant_id)
        rows = await self._db.fetch("list_keys", query)
        return [ApiKeyRecord.model_validate(row) for row in rows]

    async def revoke_api_key(self, key_id: str) -> bool:
        """Mark a key revoked (keeping the first revocation time); False if there is no such key."""
        revoked_at = sa.func.coalesce(
            api_keys.c.revoked_at, sa.bindparam("now", type_=UTCDateTime())
        )
        stmt = api_keys.update().where(api_keys.c.id == key_id).values(revoked_at=revoked_at)
        result = await self._db.write(
            "revoke_api_key", lambda conn: conn.execute(stmt, {"now": datetime.now(UTC)})
        )
        return result.rowcount > 0

    async def expire_api_key(self, key_id: str, at: datetime) -> bool:
        """Expire the key at ``at`` unless it expires sooner (a rotation's grace period)."""
        when = sa.bindparam("at", type_=UTCDateTime())
        sooner = sa.case(
            (api_keys.c.expires_at.is_(None), when),
            (api_keys.c.expires_at < when, api_keys.c.expires_at),
            else_=when,
        )
        stmt = api_keys.update().where(api_keys.c.id == key_id).values(expires_at=sooner)
        result = await self._db.write("expire_api_key", lambda conn: conn.execute(stmt, {"at": at}))
        return result.rowcount > 0

    async def touch_api_keys(self, used: Mapping[str, datetime]) -> None:
        """Set each key's ``last_used_at``, never back in time: one statement for them all."""
        if not used:
            return
        params = [{"key": key_id, "at": at} for key_id, at in used.items()]

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(self._touch_stmt, params)

        await self._db.write("touch_api_keys", work)

    async def _ensure_tenant(self, conn: AsyncConnection, tenant_id: str) -> None:
        now = datetime.now(UTC)
        await conn.execute(self._insert_tenant_stmt, {"id": tenant_id, "created_at": now})
