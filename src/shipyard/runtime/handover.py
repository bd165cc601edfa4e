"""The hand-over of recorded tasks to the broker: a transactional outbox.

A task is recorded with ``handover_pending`` set, in the transaction that stores it, and its
caller is answered then. The message goes to the broker in the background: one pump per process
publishes what waits, concurrently, and clears the flags of the tasks the broker took in one
statement. So an answer never waits on the broker (measured: RabbitMQ's confirm was most of an
acknowledgement's latency at 8 connections), an outage of the broker only delays the work, and
nothing is lost on the way:

- a publish that fails is tried again, backing off (``MAX_BACKOFF_S``), for as long as the
  process runs;
- a process that stops or dies before the broker took a task leaves its flag set: a server
  that starts offers every such task again (``resume``), and every server offers, each
  ``sweep_s``, the tasks still pending after ``sweep_s`` (those of a server that died and did
  not come back).

A message offered twice is harmless: a claim is a compare-and-set, so the task runs once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from shipyard.stores.broker.base import Broker, TaskMessage
from shipyard.stores.records.base import RecordStore, TaskRecord

log = structlog.get_logger(__name__)

BATCH = 256
"""Messages one round of the pump publishes at once at most."""
MAX_BACKOFF_S = 30.0
MAX_WAITING = 100_000
"""Messages a process holds for the broker at most; past that a new task is left to the sweep
(its flag is set), so a long outage of the broker cannot fill the memory."""
SWEEP_S = 30.0
PAGE = 1000


class Handover:
    def __init__(
        self,
        records: RecordStore,
        broker: Broker,
        queue: str,
        message: Callable[[TaskRecord], TaskMessage],
        *,
        sweep_s: float = SWEEP_S,
    ) -> None:
        """``message``: a recorded task's message, for the tasks offered again (their trace
        context was not kept: they start a new trace)."""
        self._records = records
        self._broker = broker
        self._queue = queue
        self._message = message
        self._sweep_s = sweep_s
        self._waiting: dict[str, TaskMessage] = {}  # by task id, in the order offered
        self._publishing: set[str] = set()
        self._pump: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Messages this process still has to hand over."""
        return len(self._waiting) + len(self._publishing)

    def offer(self, message: TaskMessage) -> None:
        """Hand ``message`` to the broker in the background (once, if offered again meanwhile)."""
        task_id = message.task_id
        if task_id in self._waiting or task_id in self._publishing:
            return
        if len(self._waiting) >= MAX_WAITING:
            return  # its flag is set: the sweep offers it once the backlog has gone
        self._waiting[task_id] = message
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run(), name="shipyard-handover")

    async def resume(self) -> int:
        """Offer every task still pending in the records (a server starting: the process that
        recorded them stopped before the broker took them); how many. Then sweep every
        ``sweep_s``."""
        if self._sweeper is None:  # first: it goes on even if the store is down now
            self._sweeper = asyncio.create_task(self._sweep(), name="shipyard-handover-sweep")
        return await self._offer_pending(None)

    async def idle(self, timeout_s: float) -> bool:
        """Until nothing waits (at most ``timeout_s``); whether it got there."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._pump is not None and not self._pump.done():
                    await asyncio.wait({self._pump})
        return self.pending == 0

    async def close(self, timeout_s: float = 5.0) -> None:
        """Hand over what waits, for up to ``timeout_s``; what is left stays pending in the
        records (offered again by the next server that starts, or a sweep)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        if not await self.idle(timeout_s):
            log.warning("tasks left for the next server to hand over", tasks=self.pending)
        for task in (self._pump, self._sweeper):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self) -> None:
        backoff = 0.0
        while self._waiting:
            ids = list(self._waiting)[:BATCH]
            batch = [self._waiting.pop(task_id) for task_id in ids]
            self._publishing.update(ids)
            try:
                results = await asyncio.gather(
                    *(self._broker.publish(m, queue=self._queue) for m in batch),
                    return_exceptions=True,
                )
                taken = [m.task_id for m, r in zip(batch, results, strict=True) if r is None]
                refused = [
                    (m, r)
                    for m, r in zip(batch, results, strict=True)
                    if isinstance(r, BaseException)
                ]
                if taken:
                    await self._note(taken)
            finally:
                self._publishing.difference_update(ids)
            if not refused:
                backoff = 0.0
                continue
            for message, _ in refused:  # after the others: they go again after a pause
                self._waiting.setdefault(message.task_id, message)
            backoff = min(max(2 * backoff, 0.05), MAX_BACKOFF_S)
            log.warning(
                "the broker did not take tasks; offering them again",
                tasks=len(refused),
                error=str(refused[0][1]),
                retry_in_s=backoff,
            )
            await asyncio.sleep(backoff)

    async def _note(self, task_ids: list[str]) -> None:
        try:
            await self._records.handed_over(task_ids)
        except Exception as exc:  # the flags stay: offered again later, a harmless duplicate
            log.warning("cannot note tasks handed over", tasks=len(task_ids), error=str(exc))

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_s)
            cutoff = datetime.now(UTC) - timedelta(seconds=self._sweep_s)
            try:
                offered = await self._offer_pending(cutoff)
            except Exception as exc:  # the store is down: the next sweep tries again
                log.warning("cannot sweep pending hand-overs", error=str(exc))
                continue
            if offered:
                log.info("offered pending tasks to the broker again", tasks=offered)

    async def _offer_pending(self, created_before: datetime | None) -> int:
        offered, after = 0, None
        while len(self._waiting) < MAX_WAITING:
            page = await self._records.pending_handovers(
                created_before=created_before, after_id=after, limit=PAGE
            )
            for task in page:
                if task.id not in self._waiting and task.id not in self._publishing:
                    self.offer(self._message(task))
                    offered += 1
            if len(page) < PAGE:
                break
            after = page[-1].id
        return offered
