"""``SqlSessionRecords``: sessions' rows (``base.SessionRecords``) on the SQL record store."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from shipyard.stores.records._database import Database
from shipyard.stores.records.base import Page, SessionRecord
from shipyard.stores.records.lifecycle_base import subject_of
from shipyard.stores.records.schema import UTCDateTime, sessions

__all__ = ["SqlSessionRecords"]


class SqlSessionRecords:
    """``SessionRecords`` over a shared ``Database``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_session(self, session: SessionRecord) -> None:
        row = session.model_dump() | {"subject": subject_of(session.metadata)}
        stmt = sessions.insert().values(row)
        await self._db.write("add_session", lambda conn: conn.execute(stmt))

    async def get_session(self, tenant_id: str, session_id: str) -> SessionRecord | None:
        query = sessions.select().where(
            sessions.c.tenant_id == tenant_id, sessions.c.id == session_id
        )
        rows = await self._db.fetch("get_session", query)
        return SessionRecord.model_validate(rows[0]) if rows else None

    async def list_sessions(
        self,
        tenant_id: str,
        *,
        agent: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[SessionRecord]:
        query = sessions.select().where(
            sessions.c.tenant_id == tenant_id, sessions.c.deleted_at.is_(None)
        )
        if agent is not None:
            query = query.where(sessions.c.agent == agent)
        key = sessions.c.id
        return await self._db.page("list_sessions", query, key, SessionRecord, limit, cursor)

    async def delete_session(self, tenant_id: str, session_id: str) -> bool:
        now = sa.func.coalesce(sessions.c.deleted_at, sa.bindparam("now", type_=UTCDateTime()))
        stmt = (
            sessions.update()
            .where(sessions.c.tenant_id == tenant_id, sessions.c.id == session_id)
            .values(deleted_at=now)
        )
        result = await self._db.write(
            "delete_session", lambda conn: conn.execute(stmt, {"now": datetime.now(UTC)})
        )
        return result.rowcount > 0
