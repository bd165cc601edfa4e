"""A worker's presence in the record store (``GET /v1/workers``): every ``every_s`` it records
itself — its counts of tasks running, succeeded and failed — and at most every ``prune_every_s``
it deletes the rows of workers not seen for ``retention_s`` (``SHIPYARD_WORKER_RETENTION_S``):
stopped ones and ones that died. A store that is down only delays both; the worker's own work
does not depend on them.
"""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import UTC, datetime

import structlog

from shipyard.runtime.retention import PRUNE_EVERY_S, Retention
from shipyard.stores.records.base import TaskStatus, WorkerRecord, WorkerRecords

log = structlog.get_logger(__name__)

WORKER_RETENTION_S = 86400.0
"""How long a worker's row is kept after its last heartbeat by default."""


class Heartbeat:
    """One worker's row: ``running`` is kept by the worker, ``finished`` counts its outcomes."""

    def __init__(
        self,
        records: WorkerRecords,
        *,
        name: str,
        concurrency: int,
        every_s: float = 5.0,
        retention_s: float = WORKER_RETENTION_S,
        prune_every_s: float = PRUNE_EVERY_S,
    ) -> None:
        self._records = records
        self._name = name
        self._concurrency = concurrency
        self._every_s = every_s
        self._retention = Retention(
            "workers not seen",
            lambda cutoff: records.prune_workers(seen_before=cutoff),
            keep_s=retention_s,
            every_s=prune_every_s,
        )
        self.running = 0
        self._succeeded = 0
        self._failed = 0
        self._started_at = datetime.now(UTC)

    def finished(self, status: TaskStatus) -> None:
        """Count a task's outcome (succeeded; failed or dead)."""
        if status == "succeeded":
            self._succeeded += 1
        elif status in ("failed", "dead"):
            self._failed += 1

    async def run(self) -> None:
        """A heartbeat every ``every_s`` and the pruning of old workers' rows, until cancelled."""
        while True:
            try:
                await self.beat()
            except Exception as exc:
                log.warning("worker heartbeat failed", worker=self._name, error=str(exc))
            await self._retention.maybe()
            await asyncio.sleep(self._every_s)

    async def beat(self, *, stopped: bool = False) -> None:
        """Record the worker now (``stopped``: its last beat, saying it stopped)."""
        now = datetime.now(UTC)
        await self._records.heartbeat(
            WorkerRecord(
                name=self._name,
                host=socket.gethostname(),
                pid=os.getpid(),
                concurrency=self._concurrency,
                running=self.running,
                succeeded=self._succeeded,
                failed=self._failed,
                heartbeat_s=self._every_s,
                started_at=self._started_at,
                last_seen=now,
                stopped_at=now if stopped else None,
            )
        )
