"""The SQS broker's consumers and deliveries (see ``sqs`` for the guarantees).

A consumer polls while it has free prefetch slots, and keeps its unsettled deliveries invisible
to other consumers by extending their visibility timeout every ``visibility_s / 3`` (the
heartbeat). A delivery whose lease could not be extended in time, or that was handed back when
its consumer left, can no longer be settled: SQS delivers it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from shipyard.errors import StoreError
from shipyard.stores.broker.base import Delivery, TaskMessage, check_delay

log = structlog.get_logger("shipyard.broker.sqs")

POLL_PAUSE_S = 1.0
"""How long a consumer waits after a failed poll before it polls again."""
BATCH = 10
"""SQS hands out at most ten messages a ``ReceiveMessage``."""
MAX_VISIBILITY_S = 43_200
"""SQS's longest visibility timeout (12 hours): a FIFO retry's longest delay."""
GATHER_S = 0.05
"""How long a consumer with a slot free, but not a whole batch, waits for more slots before it
polls: one receive of several messages instead of one receive each (each receive is a billed
request on AWS, and costs moto a scan of the whole queue)."""


@dataclass(frozen=True, slots=True)
class Received:
    """One SQS message received for a consumer, already parsed."""

    url: str
    receipt: str
    message: TaskMessage
    receive_count: int
    group: str | None = None
    """The FIFO queue's message group; ``None`` on a standard queue."""


class Link(Protocol):
    """What consumers and deliveries need from their broker."""

    visibility_s: int
    fifo: bool

    def translate(self, operation: str) -> AbstractAsyncContextManager[None]: ...

    async def receive(self, queue: str, count: int) -> list[Received]: ...

    async def set_visibility(self, entries: Sequence[tuple[str, str]], seconds: int) -> set[str]:
        """Set the visibility of ``(url, receipt)`` pairs; the receipts that failed."""
        ...

    async def delete(self, url: str, receipt: str) -> None: ...

    async def send(
        self, queue: str, message: TaskMessage, *, delay_s: float = 0, dead: str | None = None
    ) -> None: ...


class SqsDelivery:
    """A received message, settled through its broker while its lease holds."""

    __slots__ = ("_consumer", "_received", "_settled", "lease_until", "message")

    def __init__(self, consumer: Consumer, received: Received, lease_until: float) -> None:
        self._consumer = consumer
        self._received = received
        self._settled = False
        self.lease_until = lease_until
        self.message = received.message

    def __repr__(self) -> str:
        return f"<Delivery {self.message.task_id} attempt={self.message.attempt}>"

    @property
    def redelivered(self) -> bool:
        return self._received.receive_count > 1

    @property
    def entry(self) -> tuple[str, str]:
        return self._received.url, self._received.receipt

    @property
    def group(self) -> str | None:
        return self._received.group

    async def ack(self) -> None:
        async with self._settle("ack") as link:
            await link.delete(*self.entry)

    async def nack(self, *, requeue: bool) -> None:
        if not requeue:
            return await self._dead("nack", "rejected")
        await self._hide("nack", 0)
        return None

    async def retry(self, delay_s: float) -> None:
        """A copy with SQS's per-message delay; on a FIFO queue, which has none, the message
        itself stays hidden for the delay (its group waits: the order holds), at most 12 h."""
        delay = check_delay(delay_s)
        if self._consumer.link.fifo:
            return await self._hide("retry", min(math.ceil(delay), MAX_VISIBILITY_S))
        again = self.message.next_attempt()
        async with self._settle("retry") as link:
            await link.send(self._consumer.queue, again, delay_s=delay)
            await link.delete(*self.entry)
        return None

    async def _hide(self, operation: str, seconds: int) -> None:
        """Leave the message in its queue, visible again in ``seconds``."""
        async with self._settle(operation, kept=True) as link:
            failed = await link.set_visibility([self.entry], seconds)
            if failed:
                raise StoreError(f"broker (sqs) {operation}: the delivery's lease was lost")

    async def dead(self, reason: str) -> None:
        await self._dead("dead", str(reason))

    async def _dead(self, operation: str, reason: str) -> None:
        async with self._settle(operation) as link:
            await link.send(self._consumer.queue, self.message, dead=reason)
            await link.delete(*self.entry)

    @asynccontextmanager
    async def _settle(self, operation: str, *, kept: bool = False) -> AsyncIterator[Link]:
        """Settle once, while the lease holds; ``kept``: the message stays in its queue (then
        the later messages of its FIFO group that this consumer holds go back behind it)."""
        if self._settled:
            raise RuntimeError(f"{self!r} is already settled")
        self._settled = True
        try:
            if time.monotonic() >= self.lease_until:
                raise StoreError(
                    f"broker (sqs) {operation}: the delivery was handed back (its consumer "
                    "left or its lease expired); SQS delivers it again",
                    details={"operation": operation},
                )
            async with self._consumer.link.translate(operation):
                yield self._consumer.link
        finally:
            await self._consumer.settled(self, kept=kept)


class Consumer:
    """Deliveries of one ``consume``: at most ``prefetch`` unsettled at a time.

    On a FIFO queue one receive may bring several messages of one group, in order: the first is
    handed out, the others are held (unsettled, their visibility extended) until it is settled.
    Then the next is handed out — or, if the first stays in the queue (a retry, a nack), they
    are handed back to SQS, which delivers them after it: a group runs one at a time, in order.
    """

    def __init__(self, link: Link, queue: str, prefetch: int) -> None:
        self.link = link
        self.queue = queue
        self._prefetch = prefetch
        self._unsettled: dict[SqsDelivery, None] = {}  # in arrival order
        self._inbox: asyncio.Queue[SqsDelivery | None] = asyncio.Queue()
        self._room = asyncio.Event()
        self._room.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._ended = False
        self._heads: dict[str, SqsDelivery] = {}  # FIFO group -> its delivery handed out
        self._held: dict[str, deque[SqsDelivery]] = {}  # FIFO group -> its later ones

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._poll(), name=f"sqs-poll-{self.queue}"),
            asyncio.create_task(self._heartbeat(), name=f"sqs-heartbeat-{self.queue}"),
        ]

    async def settled(self, delivery: SqsDelivery, *, kept: bool = False) -> None:
        self._unsettled.pop(delivery, None)
        self._room.set()
        group = delivery.group
        if group is None or self._heads.get(group) is not delivery:
            return
        del self._heads[group]
        held = self._held.pop(group, deque())
        if not held:
            return
        if not kept:
            self._hand_out(held.popleft())
            if held:
                self._held[group] = held
            return
        for later in held:
            self._unsettled.pop(later, None)
            later.lease_until = 0.0
        with contextlib.suppress(StoreError):
            async with self.link.translate("hand back"):
                await self.link.set_visibility([d.entry for d in held], 0)

    def _hand_out(self, delivery: SqsDelivery) -> None:
        if delivery.group is not None:
            self._heads[delivery.group] = delivery
        self._inbox.put_nowait(delivery)

    def _arrived(self, delivery: SqsDelivery) -> None:
        self._unsettled[delivery] = None
        group = delivery.group
        if group is not None and group in self._heads:
            self._held.setdefault(group, deque()).append(delivery)
        else:
            self._hand_out(delivery)

    async def stop(self) -> None:
        """End the iteration and hand the unsettled deliveries back (visible again at once)."""
        self.end()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        handed = list(self._unsettled)
        self._unsettled.clear()
        self._heads.clear()
        self._held.clear()
        for delivery in handed:
            delivery.lease_until = 0.0  # settling it now raises StoreError
        if handed:
            with contextlib.suppress(StoreError):
                async with self.link.translate("hand back"):
                    await self.link.set_visibility([d.entry for d in handed], 0)

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self._inbox.put_nowait(None)
            self._room.set()  # a poll waiting for room sees the end

    def __aiter__(self) -> Consumer:
        return self

    async def __anext__(self) -> Delivery:
        delivery = await self._inbox.get()
        if delivery is None:
            self._inbox.put_nowait(None)  # stay ended for the next call
            raise StopAsyncIteration
        return delivery

    async def _free_slots(self) -> int:
        """The free prefetch slots once there is a batch of them, or some and ``GATHER_S``
        has passed since the first; 0 once the consumer ended."""
        batch = min(BATCH, self._prefetch)
        loop = asyncio.get_running_loop()
        gathered_until: float | None = None
        while not self._ended:
            free = self._prefetch - len(self._unsettled)
            if free >= batch:
                return free
            wait_s: float | None = None
            if free > 0:
                gathered_until = gathered_until or loop.time() + GATHER_S
                wait_s = gathered_until - loop.time()
                if wait_s <= 0:
                    return free
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._room.wait()
        return 0

    async def _poll(self) -> None:
        while not self._ended:
            free = await self._free_slots()
            if free <= 0:
                continue
            started = time.monotonic()
            try:
                async with self.link.translate("receive"):
                    received = await self.link.receive(self.queue, free)
            except StoreError as e:
                log.warning("sqs_receive_failed", queue=self.queue, error=str(e))
                await asyncio.sleep(POLL_PAUSE_S)
                continue
            except Exception:  # a bug must not silently end the polling: log it, go on
                log.exception("sqs_receive_failed", queue=self.queue)
                await asyncio.sleep(POLL_PAUSE_S)
                continue
            lease_until = started + self.link.visibility_s
            for item in received:
                self._arrived(SqsDelivery(self, item, lease_until))

    async def _heartbeat(self) -> None:
        period = self.link.visibility_s / 3
        while True:
            await asyncio.sleep(period)
            await self._extend(list(self._unsettled))

    async def _extend(self, deliveries: list[SqsDelivery]) -> None:
        if not deliveries:
            return
        started = time.monotonic()
        try:
            async with self.link.translate("heartbeat"):
                failed = await self.link.set_visibility(
                    [d.entry for d in deliveries], self.link.visibility_s
                )
        except StoreError as e:
            log.warning("sqs_heartbeat_failed", queue=self.queue, error=str(e))
            return
        for delivery in deliveries:
            if delivery.entry[1] not in failed and delivery in self._unsettled:
                delivery.lease_until = started + self.link.visibility_s


_Waiting = tuple[str, "asyncio.Future[None]"]  # a receipt to delete, and who waits for it


class Deletes:
    """The deletes (acks) of one loop turn, sent as one ``DeleteMessageBatch`` per queue (ten
    entries each) instead of one call each: a worker's tasks often finish together."""

    def __init__(self, send: Callable[[str, list[str]], Awaitable[set[str]]]) -> None:
        self._send = send  # (url, receipts) -> the receipts SQS failed to delete
        self._pending: dict[str, list[_Waiting]] = {}
        self._scheduled = False

    def submit(self, url: str, receipt: str) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.setdefault(url, []).append((receipt, done))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(lambda: asyncio.ensure_future(self._flush()))
        return done

    async def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for url, items in pending.items():
            for batch in batches(items):
                await self._send_batch(url, batch)

    async def _send_batch(
        self, url: str, batch: Sequence[tuple[str, asyncio.Future[None]]]
    ) -> None:
        try:
            failed = await self._send(url, [receipt for receipt, _ in batch])
        except Exception as exc:  # handed to each ack, which reports it
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        for receipt, done in batch:
            if done.done():
                continue
            if receipt in failed:
                done.set_exception(StoreError("broker (sqs) ack: SQS did not delete the message"))
            else:
                done.set_result(None)


def batches(items: Sequence[Any], size: int = 10) -> list[Sequence[Any]]:
    """SQS's batch calls take at most ten entries."""
    return [items[i : i + size] for i in range(0, len(items), size)]
