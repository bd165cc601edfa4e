"""Finished spans into the record store, so the embedded setup shows traces with no collector.

``SpanStore.add`` runs on the event loop (the trace sink calls it as runs end their spans) and
only appends the row to a buffer; a background task writes the buffer through
``SpanRecords.write_spans`` every ``interval_s``, sooner once ``batch`` rows wait, and at
``close`` — ``batch`` rows a write. No thread hop per span, and no run waits for its spans.

A store that fails keeps its rows buffered for the next flush (the insert is idempotent, so a
write retried after a lost answer does no harm); beyond ``capacity`` the oldest are dropped and
counted. Data the store refuses, or a bug, drops that batch rather than retrying it forever.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from typing import Protocol

import structlog

from shipyard.errors import StoreError, StoreRejected
from shipyard.telemetry.spans import SpanRow

log = structlog.get_logger(__name__)


class SpanWriter(Protocol):
    """Where the rows go: the record store's span role (``SpanRecords``), seen from here."""

    async def write_spans(self, rows: Sequence[SpanRow]) -> None: ...


class SpanStore:
    """Buffers finished spans and writes them to the record store in the background."""

    def __init__(
        self,
        records: SpanWriter,
        *,
        interval_s: float = 0.5,
        batch: int = 200,
        capacity: int = 100_000,
    ) -> None:
        self._records = records
        self._interval_s = interval_s
        self._batch = batch
        self._capacity = capacity
        self._buffer: deque[SpanRow] = deque()
        self._wake = asyncio.Event()
        self._writing = asyncio.Lock()  # one flush at a time (the background one, or close's)
        self._task: asyncio.Task[None] | None = None
        self._failing = 0
        self.dropped = 0
        self.written = 0

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def add(self, row: SpanRow) -> None:
        """Buffer a finished span (never blocks, never fails)."""
        self._buffer.append(row)
        if len(self._buffer) > self._capacity:
            self._drop(len(self._buffer) - self._capacity)
        if len(self._buffer) >= self._batch:
            self._wake.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="shipyard-span-store")

    async def close(self) -> None:
        """Stop the background writer and write what is left (once: the store is closing)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not await self.flush() and self._buffer:
            log.warning("tracing.spans_lost_at_close", spans=len(self._buffer))

    async def flush(self) -> bool:
        """Write everything buffered; False if the store failed (the rows stay buffered)."""
        async with self._writing:
            return await self._flush()

    async def _flush(self) -> bool:
        while self._buffer:
            batch = [self._buffer.popleft() for _ in range(min(self._batch, len(self._buffer)))]
            try:
                await self._records.write_spans(batch)
            except asyncio.CancelledError:
                self._buffer.extendleft(reversed(batch))  # close() writes them
                raise
            except StoreRejected:
                log.exception("tracing.spans_refused", spans=len(batch))
            except StoreError as exc:
                self._buffer.extendleft(reversed(batch))
                self._drop(len(self._buffer) - self._capacity)
                self._failed(exc)
                return False
            except Exception:  # a bug: never retry the same batch forever
                log.exception("tracing.spans_not_written", spans=len(batch))
            else:
                self.written += len(batch)
            if self._buffer:
                await asyncio.sleep(0)  # a write may run on the loop (SQLite): let others in
        if self._failing:
            log.info("tracing.span_store_recovered", failed_flushes=self._failing)
            self._failing = 0
        return True

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    def _drop(self, count: int) -> None:
        if count <= 0:
            return
        for _ in range(count):
            self._buffer.popleft()
        before, self.dropped = self.dropped, self.dropped + count
        if before == 0 or len(str(self.dropped)) > len(str(before)):  # 1, 10, 100... not each
            log.warning("tracing.spans_dropped", dropped=self.dropped, capacity=self._capacity)

    def _failed(self, exc: StoreError) -> None:
        self._failing += 1
        if self._failing == 1:
            log.warning("tracing.span_store_failed", error=exc.message, pending=len(self._buffer))
