"""``shipyard.serverless.sqs:handler``: runs tasks as an AWS Lambda function fed by an SQS event
source mapping on the broker's work queues (``SHIPYARD_BROKER_URL=sqs://<prefix>``).

Lambda receives the messages and deletes the ones a batch does not report; so each record
becomes a ``Delivery`` that the ordinary worker (``runtime/worker``) runs and settles:

- ``ack`` — done: left out of ``batchItemFailures``, Lambda deletes it;
- ``nack(requeue=True)``, or no settlement at all — reported in ``batchItemFailures``: the
  message comes back when its visibility timeout ends (``redelivered``), and the queue's
  redrive policy moves one that keeps failing to the dead letters;
- ``retry(delay)`` / ``dead(reason)`` — a copy sent to the work queue with the delay (``attempt
  + 1``) or to the dead-letter queue, as the broker does; then done.

On a FIFO queue (``sqs://<prefix>?fifo=true``) a group's records (a session's turns) run one
after the other, stopping at the first that is not done: it and the group's later records are
reported, so they come back in order (AWS's advice for FIFO batches); ``retry(delay)`` hides
the message itself for the delay and reports it, since FIFO queues take no per-message delay.

The event source mapping must have ``ReportBatchItemFailures`` on (the SAM template in
``deploy/lambda/`` sets it). Services are built once per execution environment and reused.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shipyard.errors import ConfigError, StoreError
from shipyard.runtime.tasks import TASK_QUEUE
from shipyard.stores.broker import sqs_wire as wire
from shipyard.stores.broker.base import TaskMessage, check_delay
from shipyard.stores.broker.sqs_consumer import MAX_VISIBILITY_S

if TYPE_CHECKING:
    from shipyard.runtime.worker import Worker
    from shipyard.stores.broker.sqs import SqsBroker

__all__ = ["handler"]


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point: ``{"batchItemFailures": [{"itemIdentifier": id}, ...]}``."""
    runtime = _Runtime.get()
    return runtime.loop.run_until_complete(runtime.batch(event.get("Records", [])))


class RecordDelivery:
    """One record of the batch, as a ``Delivery``; ``ok`` once it is settled for good."""

    def __init__(self, broker: SqsBroker, queue: str, record: dict[str, Any]) -> None:
        self._broker = broker
        self.queue = queue
        self.record_id = str(record["messageId"])
        attributes = {
            name: {"StringValue": value.get("stringValue"), "DataType": value.get("dataType")}
            for name, value in record.get("messageAttributes", {}).items()
        }
        self.message: TaskMessage = wire.from_sqs(record["body"], attributes)
        self.not_before_ns = wire.not_before_ns(attributes)
        system = record.get("attributes", {})
        count = int(system.get("ApproximateReceiveCount", "1"))
        self.redelivered = count > 1
        self.group: str | None = system.get("MessageGroupId")  # FIFO queues only
        self._receipt = str(record.get("receiptHandle", ""))
        self._queue_name = str(record.get("eventSourceARN", "")).rsplit(":", 1)[-1]
        if broker.fifo:
            self.message = wire.fifo_received(self.message, count)
        self.ok = False
        self._settled = False

    async def ack(self) -> None:
        self._settle()
        self.ok = True

    async def nack(self, *, requeue: bool) -> None:
        if not requeue:
            return await self.dead("rejected")
        self._settle()
        return None

    async def retry(self, delay_s: float) -> None:
        delay = check_delay(delay_s)
        self._settle()
        if self._broker.fifo:
            return await self._hide(delay)
        async with self._broker.translate("retry"):
            await self._broker.send(self.queue, self.message.next_attempt(), delay_s=delay)
        self.ok = True

    async def dead(self, reason: str) -> None:
        self._settle()
        async with self._broker.translate("dead"):
            await self._broker.send(self.queue, self.message, dead=str(reason))
        self.ok = True

    async def _hide(self, delay_s: float) -> None:
        """FIFO: the message stays in its queue, hidden for the delay (at most 12 h), and is
        reported failed so that Lambda keeps it; its group waits behind it."""
        async with self._broker.translate("retry"):
            url = await self._broker.queues.existing_url(self._queue_name)
            if url is None:
                raise StoreError(f"broker (sqs) retry: no queue {self._queue_name!r}")
            seconds = min(math.ceil(delay_s), MAX_VISIBILITY_S)
            await self._broker.set_visibility([(url, self._receipt)], seconds)

    def _settle(self) -> None:
        if self._settled:
            raise RuntimeError(f"the delivery of {self.message.task_id} is already settled")
        self._settled = True


_current: _Runtime | None = None  # one per execution environment


@dataclass
class _Runtime:
    loop: asyncio.AbstractEventLoop
    broker: SqsBroker
    worker: Worker

    @staticmethod
    def get() -> _Runtime:
        global _current
        if _current is None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            _current = loop.run_until_complete(_start(loop))
        return _current

    async def batch(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        deliveries: list[RecordDelivery] = []
        failures: list[str] = []
        for record in records:
            try:
                deliveries.append(RecordDelivery(self.broker, TASK_QUEUE, record))
            except (ValueError, TypeError, KeyError):  # not a task: the redrive policy's
                failures.append(str(record.get("messageId", "")))
        if self.broker.fifo:
            groups: dict[str, list[RecordDelivery]] = {}
            for delivery in deliveries:
                groups.setdefault(delivery.group or delivery.record_id, []).append(delivery)
            await asyncio.gather(*(self._run_in_order(group) for group in groups.values()))
        else:
            await asyncio.gather(*(self._run(delivery) for delivery in deliveries))
        failures += [d.record_id for d in deliveries if not d.ok]
        return {"batchItemFailures": [{"itemIdentifier": f} for f in failures]}

    async def _run_in_order(self, group: list[RecordDelivery]) -> None:
        """A FIFO group's records one after the other, stopping at the first that is not done:
        it and those after it are reported, and come back in their order (AWS's advice)."""
        for delivery in group:
            await self._run(delivery)
            if not delivery.ok:
                return

    async def _run(self, delivery: RecordDelivery) -> None:
        if delivery.not_before_ns > time.time_ns():  # a long delay, not over yet: send it on
            wait_s = (delivery.not_before_ns - time.time_ns()) / 1e9
            async with self.broker.translate("retry"):
                await self.broker.send(delivery.queue, delivery.message, delay_s=wait_s)
            delivery.ok = True
            return
        await self.worker.handle(delivery)


async def _start(loop: asyncio.AbstractEventLoop) -> _Runtime:
    """Settings, services and a worker, as ``shipyard worker`` builds them."""
    from shipyard.app import (
        build_keys,
        build_services,
        check_stores,
        load_app,
        prepare_settings,
        prepare_stores,
    )
    from shipyard.config import load_settings
    from shipyard.runtime.worker import Worker
    from shipyard.stores.broker.sqs import SqsBroker
    from shipyard.telemetry.logging import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    settings = prepare_settings(settings)
    services = build_services(load_app(settings.app), settings)
    if not isinstance(services.broker, SqsBroker):
        raise ConfigError("the SQS handler needs SHIPYARD_BROKER_URL=sqs://<queue name prefix>")
    await check_stores(services, settings)
    await prepare_stores(services.records, build_keys(services.records, settings), settings)
    await services.start()
    worker = Worker(
        services, max_attempts=settings.task_max_attempts, retry_base_s=settings.task_retry_base_s
    )
    return _Runtime(loop, services.broker, worker)
