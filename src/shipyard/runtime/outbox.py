"""The webhook outbox: task outcomes wait in the record store until their webhook is delivered
or given up, and any worker delivers them.

A worker puts the delivery in the outbox before it acks the task's message (and puts it there
again, idempotently, if the message comes back after a crash), so neither a worker killed while
a receiver is down nor one killed before its first attempt loses a webhook: another worker's
outbox claims it when it is due. An attempt holds a lease on the delivery (a compare-and-set),
so two workers never send the same attempt; a worker that dies mid-attempt leaves the lease to
run out. Backoff and attempts are the webhook settings' (``SHIPYARD_WEBHOOK_*``).

Settled deliveries (delivered or given up) are kept for ``retention_s`` after their last
attempt (``SHIPYARD_WEBHOOK_RETENTION_S``), then deleted by whichever outbox prunes first; each
outbox prunes at most every ``prune_every_s``. Pending deliveries are never deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import structlog

from shipyard.guard.egress import redact_url
from shipyard.runtime.retention import PRUNE_EVERY_S, Retention
from shipyard.runtime.webhooks import WebhookSender
from shipyard.stores.records.base import RecordStore, WebhookDelivery, WebhookStatus

log = structlog.get_logger(__name__)

POLL_S = 0.5
"""How often the outbox looks for due deliveries when nothing wakes it."""
BATCH = 32
LEASE_MARGIN_S = 15.0
"""A lease lasts the sender's timeout plus this."""
RETENTION_S = 7 * 86400.0
"""How long a settled delivery is kept by default (``SHIPYARD_WEBHOOK_RETENTION_S``)."""


class WebhookOutbox:
    def __init__(
        self,
        records: RecordStore,
        sender: WebhookSender,
        *,
        retention_s: float = RETENTION_S,
        prune_every_s: float = PRUNE_EVERY_S,
    ) -> None:
        """``retention_s``: how long a settled delivery is kept after its last attempt."""
        self._records = records
        self._sender = sender
        self._lease_s = sender.timeout_s + LEASE_MARGIN_S
        self._retention = Retention(
            "settled webhook deliveries",
            lambda cutoff: records.prune_webhooks(settled_before=cutoff),
            keep_s=retention_s,
            every_s=prune_every_s,
        )
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def wake(self) -> None:
        """Look now (a delivery was just added)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Deliver what is due until ``stop``; a store that is down only delays deliveries."""
        while not self._stopping.is_set():
            await self._retention.maybe()
            try:
                claimed = await self._records.claim_webhooks(
                    datetime.now(UTC), lease_s=self._lease_s, limit=BATCH
                )
            except Exception as exc:
                log.warning("webhook outbox cannot read the store", error=str(exc))
                claimed = []
            if claimed:
                await asyncio.gather(*(self._attempt(d) for d in claimed))
                continue  # more may be due
            self._wake.clear()
            with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow a cancel
                async with asyncio.timeout(POLL_S):
                    await self._wake.wait()

    async def _attempt(self, delivery: WebhookDelivery) -> None:
        outcome = await self._sender.attempt(
            delivery.url,
            tenant_id=delivery.tenant_id,
            event_id=delivery.event_id,
            body=delivery.body.encode(),
            number=delivery.attempts,
            traceparent=delivery.traceparent,
        )
        now = datetime.now(UTC)
        status: WebhookStatus
        if outcome == "delivered":
            status, next_at, error = "delivered", now, None
        elif outcome in ("refused", "denied") or delivery.attempts >= self._sender.attempts:
            status, next_at, error = "failed", now, outcome
            log.warning(
                "webhook gave up",
                url=redact_url(delivery.url),
                event_id=delivery.event_id,
                attempts=delivery.attempts,
                outcome=outcome,
            )
        else:
            status = "pending"
            next_at = now + timedelta(seconds=self._sender.backoff_s(delivery.attempts))
            error = "retry"
        try:
            await self._records.settle_webhook(
                delivery.task_id, status=status, next_at=next_at, error=error
            )
        except Exception as exc:  # the lease runs out and the attempt is made again
            log.warning("webhook outcome not stored", task_id=delivery.task_id, error=str(exc))
