"""``SqlWebhookRecords``: the tasks' webhook outbox (``base.WebhookRecords``) on the SQL record
store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from shipyard.stores.records._database import Database
from shipyard.stores.records.base import WebhookDelivery, WebhookStatus
from shipyard.stores.records.schema import webhook_deliveries

__all__ = ["PRUNE_BATCH", "SqlWebhookRecords"]

PRUNE_BATCH = 1000
"""Outbox rows one pruning transaction deletes at most: a backlog (the first prune of a full
outbox) goes in several, so the other writes of the moment are not held up behind it."""


class SqlWebhookRecords:
    """``WebhookRecords`` over a shared ``Database``."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._add_stmt = db.insert(webhook_deliveries).on_conflict_do_nothing(
            index_elements=["task_id"]
        )

    async def add_webhook(self, delivery: WebhookDelivery) -> bool:
        stmt, row = self._add_stmt, delivery.model_dump()
        result = await self._db.write("add_webhook", lambda conn: conn.execute(stmt, row))
        return bool(result.rowcount)

    async def claim_webhooks(
        self, now: datetime, *, lease_s: float, limit: int
    ) -> list[WebhookDelivery]:
        w = webhook_deliveries
        free = sa.or_(w.c.lease_until.is_(None), w.c.lease_until < now)
        due = sa.and_(w.c.status == "pending", w.c.next_at <= now, free)
        query = sa.select(w.c.task_id).where(due).order_by(w.c.next_at).limit(limit)
        candidates = [row["task_id"] for row in await self._db.fetch("claim_webhooks", query)]
        if not candidates:
            return []
        lease = now + timedelta(seconds=lease_s)
        claim = (
            w.update()
            .where(w.c.task_id == sa.bindparam("t"), due)
            .values(lease_until=lease, attempts=w.c.attempts + 1, updated_at=now)
            .returning(*w.c)
        )

        async def work(conn: AsyncConnection) -> list[WebhookDelivery]:
            claimed = []
            for task_id in candidates:
                row = (await conn.execute(claim, {"t": task_id})).mappings().first()
                if row is not None:
                    claimed.append(WebhookDelivery.model_validate(dict(row)))
            return claimed

        return await self._db.write("claim_webhooks", work)

    async def settle_webhook(
        self,
        task_id: str,
        *,
        status: WebhookStatus,
        next_at: datetime,
        error: str | None = None,
    ) -> None:
        stmt = (
            webhook_deliveries.update()
            .where(webhook_deliveries.c.task_id == task_id)
            .values(
                status=status,
                next_at=next_at,
                lease_until=None,
                last_error=error,
                updated_at=datetime.now(UTC),
            )
        )
        await self._db.write("settle_webhook", lambda conn: conn.execute(stmt))

    async def prune_webhooks(self, *, settled_before: datetime) -> int:
        """In transactions of at most ``PRUNE_BATCH`` rows. A settled delivery's ``next_at`` is
        when it settled (``settle_webhook``), so the ``(status, next_at)`` index finds them
        without a scan of every settled row."""
        w = webhook_deliveries
        settled = sa.and_(
            w.c.status.in_(("delivered", "failed")),
            w.c.next_at < settled_before,
            w.c.updated_at < settled_before,
        )
        batch = sa.select(w.c.task_id).where(settled).limit(PRUNE_BATCH)
        # the condition again on the deleted rows: one that changed meanwhile is not taken
        stmt = w.delete().where(w.c.task_id.in_(batch), settled)
        deleted = 0
        while True:
            result = await self._db.write("prune_webhooks", lambda conn: conn.execute(stmt))
            deleted += result.rowcount
            if result.rowcount < PRUNE_BATCH:
                return deleted
