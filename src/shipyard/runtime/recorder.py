"""Group commit of run records: many runs' events in one transaction, nothing lost.

Events arrive synchronously from the emitters. A single writer task drains everything pending in
one ``write_batch``; while it writes, new events gather for the next batch. A run is answered only
once the batch holding its terminal event is committed (``durable``), so a finished run is never
lost; a failed write is retried with backoff and its events stay queued until it succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from datetime import UTC, datetime

import structlog

from shipyard.errors import StoreError, StoreRejected
from shipyard.stores.records.base import RunRecord, RunRecords
from shipyard.telemetry.events import EPHEMERAL, Event

log = structlog.get_logger(__name__)

_BACKOFF = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


class Recorder:
    def __init__(self, store: RunRecords, *, wait_s: float = 10.0) -> None:
        self._store = store
        self._wait_s = wait_s
        self._events: list[Event] = []
        self._runs: dict[str, RunRecord] = {}
        self._live: dict[str, RunRecord] = {}
        self._waiting: list[asyncio.Future[None]] = []  # for what is pending
        self._writing: list[asyncio.Future[None]] | None = None  # for the batch being written
        self._wakeup = asyncio.Event()
        self._timers: dict[int, asyncio.TimerHandle] = {}  # by id() of a list of waiters
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._writer(), name="shipyard-recorder")

    def sink(self, event: Event) -> None:
        """Take an event (from an emitter); never blocks."""
        if event.type in EPHEMERAL:
            return
        self._events.append(event)
        if event.type == "run.started":
            run = _started(event)
            self._live[event.run_id] = run
            self._runs[event.run_id] = run
        elif event.type in ("run.completed", "run.failed"):
            begun = self._live.pop(event.run_id, None)
            if begun is not None:
                self._runs[event.run_id] = _finished(begun, event)
        self._wakeup.set()

    async def durable(self) -> None:
        """Wait until every event taken so far is committed; ``StoreError`` after ``wait_s``
        (the events stay queued and are written when the store recovers)."""
        if self._events or self._runs:
            waiters = self._waiting
        elif self._writing is not None:
            waiters = self._writing
        else:
            return
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        if id(waiters) not in self._timers:  # one timer for the runs waiting on a batch
            self._timers[id(waiters)] = loop.call_later(self._wait_s, self._expire, waiters)
        waiters.append(done)
        await done

    def _expire(self, waiters: list[asyncio.Future[None]]) -> None:
        """The store has not confirmed these runs in time: their callers learn it (the writer
        goes on trying; a run that waits on the same batch later gets a timer of its own)."""
        self._timers.pop(id(waiters), None)
        for done in waiters:
            if not done.done():
                done.set_exception(
                    StoreError(
                        "the run finished but the record store has not confirmed it yet; "
                        "it will be written when the store recovers"
                    )
                )

    async def close(self) -> None:
        """Flush what is pending, then stop the writer."""
        if self._task is None:
            return
        with contextlib.suppress(StoreError):
            await self.durable()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _writer(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._events or self._runs:
                await self._write_pending()

    async def _write_pending(self) -> None:
        events, runs = self._events, list(self._runs.values())
        self._events, self._runs = [], {}
        waiters, self._waiting = self._waiting, []
        self._writing = waiters
        await self._write_until_stored(runs, events)
        self._writing = None
        timer = self._timers.pop(id(waiters), None)
        if timer is not None:
            timer.cancel()
        for done in waiters:
            if not done.done():
                done.set_result(None)

    async def _write_until_stored(
        self, runs: list[RunRecord], events: list[Event], *, split: bool = True
    ) -> None:
        """Retry while the store is unavailable. A batch refused for what it holds is written
        run by run (``split``), so one bad run never holds up the others; without ``split``
        the refusal is raised."""
        for attempt, delay in enumerate(itertools.chain(_BACKOFF, itertools.repeat(_BACKOFF[-1]))):
            try:
                await self._store.write_batch(runs, events)
                return
            except Exception as exc:
                if isinstance(exc, StoreError) and not isinstance(exc, StoreRejected):
                    # unavailable: keep the events and try again; the store may come back
                    log.warning("record write failed, retrying", attempt=attempt + 1, err=str(exc))
                    await asyncio.sleep(delay)
                    continue
                if not split:
                    raise
                log.exception("record batch refused; writing it run by run", runs=len(runs))
                await self._write_each(runs, events)
                return

    async def _write_each(self, runs: list[RunRecord], events: list[Event]) -> None:
        by_run: dict[str, list[Event]] = {}
        for event in events:
            by_run.setdefault(event.run_id, []).append(event)
        for run in runs:
            mine = by_run.pop(run.id, [])
            try:
                await self._write_until_stored([run], mine, split=False)
            except Exception:  # what cannot be stored as it is, is stored without its data
                log.exception("run record refused; storing it without its data", run_id=run.id)
                await self._write_scrubbed(*_scrubbed(run, mine))
        for orphans in by_run.values():  # events of runs whose row was written earlier
            try:
                await self._write_until_stored([], orphans, split=False)
            except Exception:
                log.exception("events refused; storing them without their data")
                await self._write_scrubbed([], _scrubbed_events(orphans))

    async def _write_scrubbed(self, runs: list[RunRecord], events: list[Event]) -> None:
        try:
            await self._write_until_stored(runs, events, split=False)
        except Exception:  # the store refuses even the bare rows: nothing more can be done
            log.exception("records dropped", runs=[r.id for r in runs], events=len(events))


def _scrubbed(run: RunRecord, events: list[Event]) -> tuple[list[RunRecord], list[Event]]:
    note = {"unrecordable": "this run's data could not be stored; see the server log"}
    row = run.model_copy(update={"input": None, "metadata": note, "output": None})
    return [row], _scrubbed_events(events)


def _scrubbed_events(events: list[Event]) -> list[Event]:
    note = {"unrecordable": "this event's data could not be stored; see the server log"}
    return [e.model_copy(update={"data": note}) for e in events]


def _started(event: Event) -> RunRecord:
    return RunRecord(
        id=event.run_id,
        tenant_id=event.tenant_id,
        agent=event.agent,
        status="running",
        input=event.data.get("input"),
        metadata=event.data.get("metadata") or {},
        session_id=event.session_id,
        task_id=event.task_id,
        trace_id=event.trace_id,
        created_at=datetime.fromtimestamp(event.ts, UTC),
        parent_run_id=event.data.get("parent_run_id"),
    )


def _finished(run: RunRecord, event: Event) -> RunRecord:
    usage = event.data.get("usage") or {}
    ok = event.type == "run.completed"
    return run.model_copy(
        update={
            "status": "succeeded" if ok else "failed",
            "output": event.data.get("output") if ok else None,
            "error": None if ok else event.data.get("error"),
            "prompt_tokens": usage.get("prompt_tokens", 0),
            "completion_tokens": usage.get("completion_tokens", 0),
            "cost_usd": usage.get("cost_usd", 0.0),
            "ended_at": datetime.fromtimestamp(event.ts, UTC),
        }
    )
