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

from shipyard.errors import StoreError
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
        """Wait until every event taken so far is committed."""
        if self._events or self._runs:
            waiters = self._waiting
        elif self._writing is not None:
            waiters = self._writing
        else:
            return
        done = asyncio.get_running_loop().create_future()
        waiters.append(done)
        try:
            async with asyncio.timeout(self._wait_s):
                await done
        except TimeoutError as exc:
            raise StoreError(
                "the run finished but the record store has not confirmed it yet; "
                "it will be written when the store recovers"
            ) from exc

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
        for attempt, delay in enumerate(itertools.chain(_BACKOFF, itertools.repeat(_BACKOFF[-1]))):
            try:
                await self._store.write_batch(runs, events)
                break
            except Exception as exc:  # keep the events and try again; the store may come back
                log.warning("record write failed, retrying", attempt=attempt + 1, error=repr(exc))
                await asyncio.sleep(delay)
        self._writing = None
        for done in waiters:
            if not done.done():
                done.set_result(None)


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
