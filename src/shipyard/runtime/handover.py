"""The hand-over of recorded tasks to the broker: a transactional outbox.

A task is recorded with ``handover_pending`` set, in the transaction that stores it, and its
caller is answered then. The message goes to the broker in the background: one pump per process
publishes what waits, concurrently, and clears the flags of the tasks the broker took in one
statement (a worker's claim clears it too). So an answer never waits on the broker (measured:
RabbitMQ's confirm was most of an acknowledgement's latency at 8 connections), an outage of the
broker only delays the work, and nothing is lost on the way:

- a message the broker refuses is tried again after a pause (doubling, ``MAX_BACKOFF_S`` at
  most) for as long as the process runs, while the others go on; the process notes in the
  records that it is still on it (``offering``);
- a process that stops or dies before the broker took a task leaves its flag set: every server
  sweeps, when it starts and then each ``sweep_s``, for the tasks pending that no process has
  said it is handing over for ``sweep_s``, and takes them over (one server takes each).

A task's message can still reach the broker twice (a process dies between the broker's confirm
and its note; a sweep takes over from a process too slow to say it is still on it). The worker
that gets the second finds the task no longer queued and drops it; a final task's outcome is
published again (subscribers deduplicate it by id).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import structlog

from shipyard.stores.broker.base import Broker, TaskMessage
from shipyard.stores.records.base import RecordStore, TaskRecord

log = structlog.get_logger(__name__)

BATCH = 256
"""Messages one round of the pump publishes at once at most."""
MAX_BACKOFF_S = 10.0
"""Longest pause before a refused message is tried again (and a third of ``sweep_s`` at most,
so that the process's notes keep sweeps off the tasks it is still handing over)."""
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
        """``message``: a recorded task's message, for the tasks a sweep takes over."""
        self._records = records
        self._broker = broker
        self._queue = queue
        self._message = message
        self._sweep_s = sweep_s
        self._waiting: dict[str, TaskMessage] = {}  # by task id, in the order offered
        self._publishing: set[str] = set()
        self._refused: dict[str, TaskMessage] = {}  # back into waiting after the pause
        self._backoff_s = 0.0
        self._pause: asyncio.TimerHandle | None = None
        self._pump: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Messages this process still has to hand over."""
        return len(self._waiting) + len(self._publishing) + len(self._refused)

    def offer(self, message: TaskMessage) -> None:
        """Hand ``message`` to the broker in the background (once, if offered again meanwhile)."""
        task_id = message.task_id
        held = task_id in self._waiting or task_id in self._publishing or task_id in self._refused
        if not held and len(self._waiting) < MAX_WAITING:  # else the sweep offers it later
            self._waiting[task_id] = message
        self._pump_on()

    async def resume(self) -> int:
        """Take over the tasks nobody is handing over (a server starting: the process that
        recorded them stopped first); how many. Then sweep for them each ``sweep_s``."""
        if self._sweeper is None:  # first: it goes on even if the store is down now
            self._sweeper = asyncio.create_task(self._sweep(), name="shipyard-handover-sweep")
        return await self._take_over()

    async def idle(self, timeout_s: float) -> bool:
        """Until nothing waits (at most ``timeout_s``); whether it got there."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._pump is not None and not self._pump.done():
                    await asyncio.wait({self._pump})
        return self.pending == 0

    async def close(self, timeout_s: float = 5.0) -> None:
        """Hand over what waits (refused messages get one more try at once), for up to
        ``timeout_s``; what is left stays pending in the records, for a sweep."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._retry_refused()
        if not await self.idle(timeout_s):
            log.warning("tasks left pending for a sweep to hand over", tasks=self.pending)
        if self._pause is not None:
            self._pause.cancel()
        for task in (self._pump, self._sweeper):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _pump_on(self) -> None:
        if self._waiting and (self._pump is None or self._pump.done()):
            self._pump = asyncio.create_task(self._run(), name="shipyard-handover")

    async def _run(self) -> None:
        while self._waiting:
            ids = list(self._waiting)[:BATCH]
            batch = [self._waiting.pop(task_id) for task_id in ids]
            self._publishing.update(ids)
            try:
                results = await asyncio.gather(
                    *(self._broker.publish(m, queue=self._queue) for m in batch),
                    return_exceptions=True,
                )
            finally:
                self._publishing.difference_update(ids)
            taken = [m.task_id for m, r in zip(batch, results, strict=True) if r is None]
            refused = [(m, r) for m, r in zip(batch, results, strict=True) if r is not None]
            if taken:
                await self._note(self._records.handed_over, taken)
            if refused:
                await self._hold(refused)
            elif taken:
                self._backoff_s = 0.0

    async def _hold(self, refused: list[tuple[TaskMessage, BaseException]]) -> None:
        """The refused messages go again after a pause; the others meanwhile go at once."""
        for message, _ in refused:
            self._refused.setdefault(message.task_id, message)
        longest = min(MAX_BACKOFF_S, self._sweep_s / 3)
        self._backoff_s = min(max(2 * self._backoff_s, 0.05), longest)
        log.warning(
            "the broker did not take tasks; offering them again",
            tasks=len(refused),
            error=str(refused[0][1]),
            retry_in_s=self._backoff_s,
        )
        await self._note(self._records.offering, [m.task_id for m, _ in refused])
        if self._pause is None:
            loop = asyncio.get_running_loop()
            self._pause = loop.call_later(self._backoff_s, self._retry_refused)

    def _retry_refused(self) -> None:
        self._pause = None
        for task_id, message in self._refused.items():
            self._waiting.setdefault(task_id, message)
        self._refused.clear()
        self._pump_on()

    async def _note(
        self, note: Callable[[list[str]], Awaitable[None]], task_ids: list[str]
    ) -> None:
        try:
            await note(task_ids)
        except Exception as exc:  # a flag left set: a sweep offers it again, a harmless duplicate
            log.warning("cannot note a hand-over", tasks=len(task_ids), error=str(exc))

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_s)
            try:
                taken = await self._take_over()
            except Exception as exc:  # the store is down: the next sweep tries again
                log.warning("cannot sweep pending hand-overs", error=str(exc))
                continue
            if taken:
                log.info("took over tasks nobody was handing to the broker", tasks=taken)

    async def _take_over(self) -> int:
        stale_before = datetime.now(UTC) - timedelta(seconds=self._sweep_s)
        taken = 0
        while len(self._waiting) < MAX_WAITING:
            tasks = await self._records.take_stale_handovers(stale_before=stale_before, limit=PAGE)
            for task in tasks:
                self.offer(self._message(task))
            taken += len(tasks)
            if len(tasks) < PAGE:
                return taken
        return taken
