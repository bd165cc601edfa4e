"""``EmbeddedBroker``: the broker in-process, durable through a SQLite table.

Messages are rows of ``broker_messages`` (see ``embedded_ops``), so queued tasks survive a
restart: ``publish`` returns after a synced commit. A consumer leases messages; it renews the
leases of its unsettled deliveries every ``lease_s / 3`` while it runs. If the process dies,
the renewals stop and the messages become available again ``lease_s`` later; a consumer that
leaves (or a broker that closes) hands its unsettled deliveries back at once.

Threading: every SQLite call runs on the broker's one thread, on one connection, in order.
Commits are synced (``synchronous = FULL``, an fsync per commit); the publishes of the moment
share one commit (``GroupCommit``: at 8 concurrent submits, one fsync per publish capped the
server at ~1,300 acknowledgements/s here). Another process
on the same file may hold the write lock for up to the busy timeout; either would stall the
event loop, so neither runs on it. A thread hop costs ~0.1 ms, well under the fsync.

Waking: in-process, every change (publish, settle, close) swaps an ``asyncio.Event`` that idle
consumers wait on — a condition variable without a lock, since changes happen on the loop.
Changes made by another process are seen by polling, every ``poll_interval_s`` at most, and a
consumer waits no longer than the next delayed message or expiring lease.

Results (``publish_result``) fan out to this process's subscribers only (``local_results``).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from shipyard.errors import ConfigError, StoreError
from shipyard.stores._group_commit import GroupCommit
from shipyard.stores.broker import embedded_ops as ops
from shipyard.stores.broker.base import (
    DEFAULT_QUEUE,
    DeadLetter,
    Delivery,
    ResultEvent,
    TaskMessage,
    check_delay,
    check_prefetch,
    check_queue,
)
from shipyard.stores.broker.local_results import LocalResults

__all__ = ["EmbeddedBroker"]

T = TypeVar("T")

LEASE_S = 30.0
POLL_INTERVAL_S = 0.5
BUSY_TIMEOUT_MS = 5_000


class EmbeddedBroker:
    """The ``Broker`` on a SQLite file; build it with ``from_url``."""

    def __init__(
        self, path: str, *, lease_s: float = LEASE_S, poll_interval_s: float = POLL_INTERVAL_S
    ) -> None:
        if not (lease_s > 0 and poll_interval_s > 0):
            raise ValueError("lease_s and poll_interval_s must be positive")
        self._label = path
        self.lease_s = lease_s
        self.poll_interval_s = poll_interval_s
        self._changed = asyncio.Event()
        self._consumers: set[_Consumer] = set()
        self._results = LocalResults()
        self._renewer: asyncio.Task[None] | None = None
        self._closed = False
        self._publishes: GroupCommit[list[tuple[str, TaskMessage]]] = GroupCommit(self._batch)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="shipyard-broker")
        try:
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self._conn = self._thread.submit(
                ops.connect, path, busy_timeout_ms=BUSY_TIMEOUT_MS
            ).result()
        except (sqlite3.Error, OSError) as e:
            self._thread.shutdown(wait=False)
            raise StoreError(f"cannot open the broker {path!r}: {e}") from e

    @classmethod
    def from_url(
        cls, url: str, *, lease_s: float = LEASE_S, poll_interval_s: float = POLL_INTERVAL_S
    ) -> EmbeddedBroker:
        """``sqlite:///relative.db`` or ``sqlite:////absolute.db`` (a file: the broker is
        durable, so there is no in-memory variant)."""
        rest = url.removeprefix("sqlite://")
        if rest == url:
            raise ConfigError(f"unsupported broker URL {url!r} for the embedded broker: sqlite://")
        if not rest.startswith("/") or rest in ("/", "/:memory:") or "?" in rest:
            raise ConfigError(f"invalid embedded broker URL {url!r}: use sqlite:///path.db")
        return cls(rest[1:], lease_s=lease_s, poll_interval_s=poll_interval_s)

    # -- lifecycle ------------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._call("ping", lambda conn: conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        """Hand back every unsettled delivery, end consumers and subscriptions; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._publishes.idle()  # publishes already accepted are written, not failed
        self._notify()
        self._results.close()
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        for consumer in list(self._consumers):
            with contextlib.suppress(StoreError):
                await consumer.hand_back()
        await asyncio.wrap_future(self._thread.submit(self._conn.close))
        self._thread.shutdown(wait=True)

    # -- tasks ----------------------------------------------------------------------------------

    async def publish(self, message: TaskMessage, *, queue: str = DEFAULT_QUEUE) -> None:
        queue = check_queue(queue)
        self._check_open("publish")

        async def add(batch: list[tuple[str, TaskMessage]]) -> None:
            batch.append((queue, message))

        await self._publishes.run(add)
        self._notify()

    @asynccontextmanager
    async def _batch(self) -> AsyncIterator[list[tuple[str, TaskMessage]]]:
        """The publishes of one group commit, inserted in one transaction on the thread."""
        batch: list[tuple[str, TaskMessage]] = []
        yield batch
        if batch:  # accepted before a close began: written (``close`` waits for it)
            await self._run("publish", ops.insert, batch)

    def consume(
        self, queue: str = DEFAULT_QUEUE, *, prefetch: int
    ) -> AbstractAsyncContextManager[AsyncIterator[Delivery]]:
        return self._consume(check_queue(queue), check_prefetch(prefetch))

    @asynccontextmanager
    async def _consume(self, queue: str, prefetch: int) -> AsyncIterator[AsyncIterator[Delivery]]:
        self._check_open("consume")
        consumer = _Consumer(self, queue, prefetch)
        self._consumers.add(consumer)
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_leases())
        try:
            yield consumer
        finally:
            self._consumers.discard(consumer)
            if not self._closed:
                await consumer.hand_back()

    # -- results --------------------------------------------------------------------------------

    async def publish_result(self, event: bytes, *, routing_key: str) -> None:
        self._check_open("publish_result")
        if not isinstance(event, bytes):
            raise TypeError(f"a result event is bytes, not {type(event).__name__}")
        self._results.publish(ResultEvent(routing_key, event))

    def subscribe_results(
        self, pattern: str = "#"
    ) -> AbstractAsyncContextManager[AsyncIterator[ResultEvent]]:
        self._check_open("subscribe_results")
        return self._results.subscribe(pattern)

    # -- stats ----------------------------------------------------------------------------------

    async def depth(self, queue: str = DEFAULT_QUEUE) -> int:
        return await self._call("depth", ops.depth, check_queue(queue))

    async def dead_letters(
        self, queue: str = DEFAULT_QUEUE, *, limit: int = 100
    ) -> list[DeadLetter]:
        rows = await self._call("dead_letters", ops.dead_letters, check_queue(queue), limit)
        return [DeadLetter(message, reason) for message, reason in rows]

    # -- private --------------------------------------------------------------------------------

    def _check_open(self, operation: str) -> None:
        if self._closed:
            raise StoreError("the broker is closed", details={"operation": operation})

    def _notify(self) -> None:
        """Wake every idle consumer of this broker: something changed."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _call(self, operation: str, fn: Callable[..., T], *args: Any) -> T:
        self._check_open(operation)
        return await self._run(operation, fn, *args)

    async def _run(self, operation: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` on the broker's thread; driver errors leave as ``StoreError``."""
        try:
            return await asyncio.wrap_future(self._thread.submit(fn, self._conn, *args))
        except (sqlite3.Error, OSError) as e:
            reason = getattr(e, "sqlite_errorname", None) or type(e).__name__
            message = f"broker (sqlite {self._label}) {operation} failed: {reason}"
            raise StoreError(message, details={"operation": operation}) from e

    async def _renew_leases(self) -> None:
        """Keep this process's unsettled deliveries leased while it is alive."""
        while not self._closed:
            await asyncio.sleep(self.lease_s / 3)
            leases = [lease for c in self._consumers for lease in c.leases()]
            if leases:
                with contextlib.suppress(StoreError):  # the next round tries again
                    await self._call("renew", ops.renew, leases, self.lease_s)


class _Delivery:
    __slots__ = ("_consumer", "_settled", "id", "message", "redelivered", "token")

    def __init__(self, consumer: _Consumer, claimed: ops.Claimed) -> None:
        self._consumer = consumer
        self._settled = False
        self.id = claimed.id
        self.token = claimed.token
        self.message = claimed.message
        self.redelivered = claimed.token > 1

    def __repr__(self) -> str:
        return f"<Delivery {self.message.task_id} attempt={self.message.attempt}>"

    async def ack(self) -> None:
        await self._settle("ack", ops.ack)

    async def nack(self, *, requeue: bool) -> None:
        if requeue:
            await self._settle("nack", ops.requeue)
        else:
            await self._settle("nack", ops.dead, "rejected")

    async def retry(self, delay_s: float) -> None:
        await self._settle("retry", ops.retry, check_delay(delay_s))

    async def dead(self, reason: str) -> None:
        await self._settle("dead", ops.dead, str(reason))

    async def _settle(self, operation: str, fn: Callable[..., bool], *args: Any) -> None:
        if self._settled:
            raise RuntimeError(f"{self!r} is already settled")
        self._settled = True
        consumer = self._consumer
        handed_back = consumer.forget(self)
        if handed_back:
            raise _lost(operation)
        try:
            ok = await consumer.broker._call(operation, fn, self.id, self.token, *args)
        finally:
            consumer.broker._notify()
        if not ok:
            raise _lost(operation)


def _lost(operation: str) -> StoreError:
    return StoreError(
        "the delivery was handed back (its consumer left or its lease expired): "
        "the message is delivered again",
        details={"operation": operation},
    )


class _Consumer:
    """An async iterator of deliveries that keeps at most ``prefetch`` of them unsettled."""

    def __init__(self, broker: EmbeddedBroker, queue: str, prefetch: int) -> None:
        self.broker = broker
        self.queue = queue
        self.prefetch = prefetch
        self._unsettled: dict[int, _Delivery] = {}  # id → delivery, yielded or buffered
        self._buffer: deque[_Delivery] = deque()
        self._claiming: asyncio.Task[float | None] | None = None
        self._ended = False

    def leases(self) -> list[tuple[int, int]]:
        return [(d.id, d.token) for d in self._unsettled.values()]

    def forget(self, delivery: _Delivery) -> bool:
        """Stop tracking a delivery being settled; True if it was handed back already."""
        return self._unsettled.pop(delivery.id, None) is not delivery

    async def hand_back(self) -> None:
        """End the iteration and release every unsettled delivery to the queue."""
        self._ended = True
        if self._claiming is not None:
            await asyncio.gather(self._claiming, return_exceptions=True)
        leases = self.leases()
        self._unsettled.clear()
        self._buffer.clear()
        if leases:
            await self.broker._run("consume", ops.release, leases)  # also while closing
            self.broker._notify()

    def __aiter__(self) -> _Consumer:
        return self

    async def __anext__(self) -> Delivery:
        while True:
            if self._ended or self.broker._closed:
                raise StopAsyncIteration
            if self._buffer:
                return self._buffer.popleft()
            changed = self.broker._changed
            room = self.prefetch - len(self._unsettled)
            next_due = await self._claim(room) if room > 0 else None
            if self._buffer:
                continue
            timeout = self.broker.poll_interval_s
            if next_due is not None:
                timeout = max(0.0, min(timeout, next_due - time.time()))
            with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow a cancel
                async with asyncio.timeout(timeout):
                    await changed.wait()

    async def _claim(self, room: int) -> float | None:
        """Lease up to ``room`` messages into the buffer. The lease runs as a task so that a
        cancelled ``__anext__`` (a timeout around it) still records what was leased."""
        if self._claiming is None:
            self._claiming = asyncio.create_task(self._lease(room))
        try:
            return await asyncio.shield(self._claiming)
        finally:
            if self._claiming.done():
                self._claiming = None

    async def _lease(self, room: int) -> float | None:
        claim = await self.broker._call("consume", ops.claim, self.queue, room, self.broker.lease_s)
        for claimed in claim.messages:
            delivery = _Delivery(self, claimed)
            self._unsettled[delivery.id] = delivery
            self._buffer.append(delivery)
        return claim.next_due
