"""A task's outcome, as a worker settles it: stored once, then published.

1. stored with a compare-and-set from ``running`` (``store``), so a duplicate run cannot record a
   second outcome; an outcome the store refuses for its data is stored without that data;
2. published (``publish``) as a CloudEvent on the results exchange and, if the task has a
   ``webhook_url``, put in the webhook outbox (``runtime/outbox``, delivered by any worker) —
   both before the worker acks the task's message.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from shipyard.errors import StoreRejected
from shipyard.runtime.outbox import WebhookOutbox
from shipyard.runtime.tasks import cloud_event, routing_key
from shipyard.stores.broker.base import Results
from shipyard.stores.records.base import (
    TaskRecord,
    TaskRecords,
    TaskStatus,
    WebhookDelivery,
    WebhookRecords,
)

log = structlog.get_logger(__name__)

UNSTORABLE = {
    "code": "output_unstorable",
    "message": "the run finished but the store refused its outcome (it holds data the store "
    "cannot keep); see the run and the worker log",
}
_PLAIN_FIELDS = frozenset({"run_id", "prompt_tokens", "completion_tokens", "cost_usd"})
"""What of an outcome any store can keep (ids and numbers)."""


class Records(TaskRecords, WebhookRecords, Protocol):
    pass


class Outcomes:
    def __init__(
        self, records: Records, results: Results, outbox: WebhookOutbox, worker: str
    ) -> None:
        self._records = records
        self._results = results
        self._outbox = outbox
        self._worker = worker

    async def store(
        self, task: TaskRecord, status: TaskStatus, fields: dict[str, Any]
    ) -> TaskRecord | None:
        """The outcome, from running (None if the task was no longer running). An outcome the
        store refuses for its data (a NUL in the output on PostgreSQL...) is stored without it:
        ``failed`` with ``output_unstorable``, the run's id and usage kept — never retried,
        which would run the agent again for a run that already finished."""
        move = functools.partial(
            self._records.transition_task,
            task.tenant_id,
            task.id,
            expected=frozenset({"running"}),
            detail={"worker": self._worker},
        )
        try:
            return await move(status, **fields)
        except StoreRejected:
            log.exception("task outcome refused by the store; storing it without its data")
        kept = {name: value for name, value in fields.items() if name in _PLAIN_FIELDS}
        final = "failed" if status == "succeeded" else status
        return await move(final, error=UNSTORABLE, **kept)

    async def publish(self, task: TaskRecord, headers: Mapping[str, str]) -> None:
        """The outcome on the results exchange and, if the task has one, into the webhook
        outbox — both before the message is acked."""
        event_id, body = cloud_event(task)
        await self._results.publish_result(body, routing_key=routing_key(task))
        if task.webhook_url:
            await self._queue_webhook(task, event_id, body, headers)

    async def _queue_webhook(
        self, task: TaskRecord, event_id: str, body: bytes, headers: Mapping[str, str]
    ) -> None:
        """Into the outbox (before the message is acked), then delivered by any worker's
        outbox; the receiver gets the task's trace context."""
        assert task.webhook_url is not None
        now = datetime.now(UTC)
        await self._records.add_webhook(
            WebhookDelivery(
                task_id=task.id,
                tenant_id=task.tenant_id,
                url=task.webhook_url,
                event_id=event_id,
                body=body.decode(),
                traceparent=headers.get("traceparent"),
                next_at=now,
                created_at=now,
                updated_at=now,
            )
        )
        self._outbox.wake()
