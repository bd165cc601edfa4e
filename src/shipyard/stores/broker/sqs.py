"""``SqsBroker``: the broker on Amazon SQS (or any server speaking its API), via aiobotocore.

``SHIPYARD_BROKER_URL=sqs://<queue name prefix>``; the rest is configured the AWS way:
``AWS_REGION`` (or ``AWS_DEFAULT_REGION``), the usual credential chain (environment, profile,
container or instance role), and ``AWS_ENDPOINT_URL_SQS`` / ``AWS_ENDPOINT_URL`` (and
``AWS_ENDPOINT_URL_SNS``) for a local server. Layout and wire format are in ``sqs_wire``,
consumers and deliveries in ``sqs_consumer``. Guarantees:

- ``publish`` returns when SQS has stored the message (``SendMessage`` answered).
- A delivery is invisible to other consumers for ``visibility_s``, extended every third of it
  while unsettled (the heartbeat); a consumer that dies stops extending, and the message comes
  back ``visibility_s`` later with ``redelivered`` set (``ApproximateReceiveCount`` > 1). A
  consumer that leaves hands its unsettled deliveries back at once (visibility 0).
- ``retry`` sends a copy (``attempt + 1``) with SQS's per-message delay, then deletes the
  original; ``dead`` sends a copy with the reason to the dead-letter queue, then deletes. A
  crash between the two steps duplicates, never loses. Delays are whole seconds (rounded up);
  one beyond SQS's 15 minutes is waited out in several hops.
- Priority: one SQS queue per priority used; a consumer polls them highest first. On AWS a
  short poll samples a subset of SQS's servers, so priority is a strong preference there,
  not a strict order; standard queues do not keep order within a priority either (moto does).
- Results fan out through an SNS topic; each subscriber gets a queue of its own for as long
  as it listens.
- ``fifo=true``: FIFO queues, a message group per session (``sqs_wire.fifo_ids``); a retry
  hides the message itself for its delay instead of sending a delayed copy, so its group keeps
  its order (``sqs_consumer``); each receive counts an attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from shipyard.errors import ConfigError, StoreError
from shipyard.stores.broker import sqs_wire as wire
from shipyard.stores.broker.base import (
    DEFAULT_QUEUE,
    DeadLetter,
    Delivery,
    ResultEvent,
    TaskMessage,
    check_prefetch,
    check_queue,
)
from shipyard.stores.broker.local_results import MAX_QUEUED, ResultSubscription
from shipyard.stores.broker.sqs_consumer import Consumer, Deletes, Received, batches
from shipyard.stores.broker.sqs_errors import translate
from shipyard.stores.broker.sqs_queues import SqsQueues
from shipyard.stores.broker.sqs_results import ResultsTopic

if TYPE_CHECKING:
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

__all__ = ["SqsBroker"]

VISIBILITY_S = 30
WAIT_S = 20
MAX_RECEIVES = 10
TIMEOUT_S = 30.0
MAX_DELAY_S = 900
_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,40}")
_OPTIONS = {"visibility_s", "wait_s", "max_receives", "fifo"}
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


class SqsBroker:
    """The ``Broker`` on SQS; build it with ``from_url``. Connects on first use."""

    def __init__(
        self,
        prefix: str,
        *,
        region: str,
        endpoint: str | None = None,
        visibility_s: int = VISIBILITY_S,
        wait_s: int = WAIT_S,
        max_receives: int = MAX_RECEIVES,
        timeout_s: float = TIMEOUT_S,
        refresh_s: float = 10.0,
        fifo: bool = False,
    ) -> None:
        self.names = wire.Names(prefix, fifo)
        self.fifo = fifo
        self.region = region
        self.endpoint = endpoint
        self.visibility_s = visibility_s
        self.wait_s = wait_s
        self.max_receives = max_receives
        self._timeout_s = timeout_s
        self.queues = SqsQueues(
            self.names,
            region=region,
            endpoint=endpoint,
            visibility_s=visibility_s,
            read_timeout_s=wait_s + 10,
            max_receives=max_receives,
            refresh_s=refresh_s,
        )
        self._consumers: set[Consumer] = set()
        self._results = ResultsTopic(self, MAX_QUEUED)
        self._deletes = Deletes(self._delete_batch)
        self._closed = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        region: str | None = None,
        endpoint: str | None = None,
        timeout_s: float = TIMEOUT_S,
        refresh_s: float = 10.0,
    ) -> SqsBroker:
        """``sqs://<prefix>[?visibility_s=30&wait_s=20&max_receives=10&fifo=false]``. The region
        comes from ``AWS_REGION`` (or ``AWS_DEFAULT_REGION``) unless given; the endpoint from
        ``AWS_ENDPOINT_URL_SQS`` / ``AWS_ENDPOINT_URL`` (botocore's own lookup) unless given."""
        parts = urlsplit(url)
        if parts.scheme != "sqs":
            raise ConfigError(f"unsupported broker URL scheme {parts.scheme!r}: sqs://")
        prefix = parts.netloc + parts.path.rstrip("/").replace("/", "-")
        if not _PREFIX.fullmatch(prefix):
            raise ConfigError(
                f"invalid SQS queue name prefix {prefix!r}: 1-40 letters, digits, - or _"
            )
        options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        unknown = set(options) - _OPTIONS
        if unknown:
            raise ConfigError(f"unknown SQS broker option(s) {sorted(unknown)}: {sorted(_OPTIONS)}")
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            raise ConfigError("the SQS broker needs a region: set AWS_REGION")
        fifo = _BOOLEANS.get(options.get("fifo", "false").lower())
        if fifo is None:
            raise ConfigError("SQS broker option fifo must be true or false")
        return cls(
            prefix,
            region=region,
            endpoint=endpoint,
            visibility_s=_int_option(options, "visibility_s", VISIBILITY_S, 1, 43_200),
            wait_s=_int_option(options, "wait_s", WAIT_S, 1, 20),
            max_receives=_int_option(options, "max_receives", MAX_RECEIVES, 1, 1000),
            timeout_s=timeout_s,
            refresh_s=refresh_s,
            fifo=fifo,
        )

    @property
    def label(self) -> str:
        return f"sqs {self.region}/{self.names.prefix}"

    # -- lifecycle ------------------------------------------------------------------------------

    async def ping(self) -> None:
        self._check_open("ping")
        async with self.translate("ping"):
            sqs = await self.queues.sqs()
            await sqs.list_queues(QueueNamePrefix=self.names.prefix, MaxResults=1)

    async def close(self) -> None:
        """Hand back unsettled deliveries, end consumers and subscriptions; idempotent."""
        if self._closed:
            return
        self._closed = True
        for consumer in list(self._consumers):
            consumer.end()
        await asyncio.gather(*(c.stop() for c in list(self._consumers)))
        await self._results.close()
        await self.queues.close()

    def _check_open(self, operation: str) -> None:
        if self._closed:
            raise StoreError(f"broker ({self.label}) is closed", details={"operation": operation})

    # -- tasks ----------------------------------------------------------------------------------

    async def publish(self, message: TaskMessage, *, queue: str = DEFAULT_QUEUE) -> None:
        self._check_open("publish")
        check_queue(queue)
        async with self.translate("publish"):
            await self.send(queue, message)

    def consume(
        self, queue: str = DEFAULT_QUEUE, *, prefetch: int
    ) -> AbstractAsyncContextManager[AsyncIterator[Delivery]]:
        return self._consume(check_queue(queue), check_prefetch(prefetch))

    @asynccontextmanager
    async def _consume(self, queue: str, prefetch: int) -> AsyncIterator[AsyncIterator[Delivery]]:
        self._check_open("consume")
        async with self.translate("consume"):
            await self.queues.work_url(queue, 0)
        consumer = Consumer(self, queue, prefetch)
        self._consumers.add(consumer)
        consumer.start()
        try:
            yield consumer
        finally:
            self._consumers.discard(consumer)
            await consumer.stop()

    # -- results --------------------------------------------------------------------------------

    async def publish_result(self, event: bytes, *, routing_key: str) -> None:
        if not isinstance(event, bytes):
            raise TypeError(f"a result event is bytes, not {type(event).__name__}")
        self._check_open("publish_result")
        async with self.translate("publish_result"):
            await self._results.publish(event, routing_key)

    def subscribe_results(
        self, pattern: str = "#"
    ) -> AbstractAsyncContextManager[AsyncIterator[ResultEvent]]:
        return self._subscribe(pattern)

    @asynccontextmanager
    async def _subscribe(self, pattern: str) -> AsyncIterator[AsyncIterator[ResultEvent]]:
        self._check_open("subscribe_results")
        subscription = ResultSubscription(pattern, MAX_QUEUED)
        async with self._results.subscribed(subscription):
            yield subscription

    # -- stats ----------------------------------------------------------------------------------

    async def depth(self, queue: str = DEFAULT_QUEUE) -> int:
        self._check_open("depth")
        check_queue(queue)
        async with self.translate("depth"):
            sqs = await self.queues.sqs()
            total = 0
            for url in (await self.queues.work_urls(queue, refresh=True)).values():
                answer = await sqs.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
                )
                total += int(answer["Attributes"]["ApproximateNumberOfMessages"])
        return total

    async def dead_letters(
        self, queue: str = DEFAULT_QUEUE, *, limit: int = 100
    ) -> list[DeadLetter]:
        """Read without removing: receive the dead letters, then make them visible again.
        Every letter is read to sort them oldest first (SQS keeps no order)."""
        self._check_open("dead_letters")
        check_queue(queue)
        async with self.translate("dead_letters"):
            url = await self.queues.existing_url(self.names.dead(queue))
            if url is None:
                return []
            found = await self._read_all(url)
        letters: list[tuple[int, DeadLetter]] = []
        for item in found:
            with contextlib.suppress(ValueError, TypeError, KeyError):  # not a task message
                attributes = item.get("MessageAttributes", {})
                count = int(item["Attributes"].get("ApproximateReceiveCount", 1))
                reason, at_ns = wire.dead_reason(attributes, count)
                at_ns = at_ns or int(item["Attributes"].get("SentTimestamp", 0)) * 1_000_000
                letters.append((at_ns, DeadLetter(wire.from_sqs(item["Body"], attributes), reason)))
        letters.sort(key=lambda pair: pair[0])
        return [letter for _, letter in letters[:limit]]

    async def _read_all(self, url: str) -> list[MessageTypeDef]:
        sqs = await self.queues.sqs()
        found: dict[str, MessageTypeDef] = {}
        try:
            while True:
                answer = await sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=10,
                    VisibilityTimeout=60,
                    WaitTimeSeconds=0,
                    MessageAttributeNames=["All"],
                    MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
                )
                new = [m for m in answer.get("Messages", []) if m["MessageId"] not in found]
                if not new:
                    break
                found |= {m["MessageId"]: m for m in new}
        finally:
            await self.set_visibility([(url, m["ReceiptHandle"]) for m in found.values()], 0)
        return list(found.values())

    # -- the Link of consumers and deliveries -----------------------------------------------------

    def translate(self, operation: str) -> AbstractAsyncContextManager[None]:
        return translate(self.label, operation, self._timeout_s)

    async def receive(self, queue: str, count: int) -> list[Received]:
        """Up to ``count`` messages, from the highest priority that has any; long polls the
        only work queue (or briefly the lowest of several) when all are empty."""
        urls = await self.queues.work_urls(queue)
        ordered = [urls[p] for p in sorted(urls, reverse=True)]
        if not ordered:  # made by ``consume``; deleted since: make the first again
            ordered = [await self.queues.work_url(queue, 0)]
        for url in ordered[:-1]:
            got = await self._receive_from(queue, url, count, wait_s=0)
            if got:
                return got
        wait = self.wait_s if len(ordered) == 1 else 1
        return await self._receive_from(queue, ordered[-1], count, wait_s=wait)

    async def _receive_from(
        self, queue: str, url: str, count: int, *, wait_s: int
    ) -> list[Received]:
        sqs = await self.queues.sqs()
        answer = await sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(count, 10),
            VisibilityTimeout=self.visibility_s,
            WaitTimeSeconds=wait_s,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["ApproximateReceiveCount", "MessageGroupId"],
        )
        received = []
        for item in answer.get("Messages", []):
            parsed = await self._parse(queue, url, item)
            if parsed is not None:
                received.append(parsed)
        return received

    async def _parse(self, queue: str, url: str, item: MessageTypeDef) -> Received | None:
        """The received message, or ``None`` after moving aside one that is not ours (to the
        dead letters, as is) or sending on one whose long delay has not run out."""
        attributes = item.get("MessageAttributes", {})
        try:
            message = wire.from_sqs(item["Body"], attributes)
        except (ValueError, TypeError, KeyError):
            await self._set_aside(queue, url, item)
            return None
        not_before = wire.not_before_ns(attributes)
        if not_before > time.time_ns():
            await self.send(queue, message, delay_s=(not_before - time.time_ns()) / 1e9)
            await self.delete(url, item["ReceiptHandle"])
            return None
        system = item.get("Attributes", {})
        count = int(system.get("ApproximateReceiveCount", 1))
        if self.fifo:
            message = wire.fifo_received(message, count)
        return Received(url, item["ReceiptHandle"], message, count, system.get("MessageGroupId"))

    async def _set_aside(self, queue: str, url: str, item: MessageTypeDef) -> None:
        sqs = await self.queues.sqs()
        dead = await self.queues.dead_url(queue)
        if self.fifo:
            await sqs.send_message(
                QueueUrl=dead,
                MessageBody=item["Body"] or " ",
                MessageGroupId="set-aside",
                MessageDeduplicationId=item["MessageId"],
            )
        else:
            await sqs.send_message(QueueUrl=dead, MessageBody=item["Body"] or " ")
        await self.delete(url, item["ReceiptHandle"])

    async def set_visibility(self, entries: Sequence[tuple[str, str]], seconds: int) -> set[str]:
        sqs = await self.queues.sqs()
        failed: set[str] = set()
        by_url: dict[str, list[str]] = {}
        for url, receipt in entries:
            by_url.setdefault(url, []).append(receipt)
        for url, receipts in by_url.items():
            for batch in batches(receipts):
                answer = await sqs.change_message_visibility_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": seconds}
                        for i, r in enumerate(batch)
                    ],
                )
                failed |= {batch[int(f["Id"])] for f in answer.get("Failed", [])}
        return failed

    async def delete(self, url: str, receipt: str) -> None:
        """Delete a received message; the deletes of one moment go in one batch call."""
        await self._deletes.submit(url, receipt)

    async def _delete_batch(self, url: str, receipts: list[str]) -> set[str]:
        sqs = await self.queues.sqs()
        answer = await sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(receipts)],
        )
        return {receipts[int(failed["Id"])] for failed in answer.get("Failed", [])}

    async def send(
        self, queue: str, message: TaskMessage, *, delay_s: float = 0, dead: str | None = None
    ) -> None:
        """Send ``message`` to its work queue after ``delay_s`` (or to the dead letters)."""
        sqs = await self.queues.sqs()
        delay = math.ceil(delay_s)
        not_before = time.time_ns() + int(delay_s * 1e9) if delay > MAX_DELAY_S else None
        body, attributes = wire.to_sqs(message, dead_reason=dead, not_before_ns=not_before)
        if dead is not None:
            url = await self.queues.dead_url(queue)
        else:
            url = await self.queues.work_url(queue, message.priority)
        if not self.fifo:
            await sqs.send_message(
                QueueUrl=url,
                MessageBody=body,
                MessageAttributes=attributes,
                DelaySeconds=min(delay, MAX_DELAY_S),
            )
            return
        if delay:
            raise ValueError("a FIFO queue takes no per-message delay: delay by visibility")
        group, deduplication = wire.fifo_ids(message)
        await sqs.send_message(
            QueueUrl=url,
            MessageBody=body,
            MessageAttributes=attributes,
            MessageGroupId=group,
            MessageDeduplicationId=deduplication,
        )


def _int_option(options: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = options.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ConfigError(f"SQS broker option {name} must be an integer from {low} to {high}")
    return value
