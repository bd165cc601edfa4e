"""What watches the runs: the event sinks (logs, metrics, traces) and their background parts.

Built by the composition root from the settings; every part is optional, so a process with
observability off pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shipyard.telemetry.events import Sink

if TYPE_CHECKING:
    from shipyard.telemetry.eventlog import EventLog
    from shipyard.telemetry.metrics import Metrics, QueueDepth
    from shipyard.telemetry.tracing import Tracing


@dataclass(slots=True)
class Observability:
    eventlog: EventLog | None = None
    metrics: Metrics | None = None
    tracing: Tracing | None = None
    sinks: list[Sink] = field(init=False)

    def __post_init__(self) -> None:
        # a sink that would do nothing is left out: with no exporter the trace sink has nowhere
        # to send spans (GET /v1/traces replays the stored events: telemetry.tracing.spans_of)
        parts = (
            self.eventlog,
            self.metrics,
            self.tracing if self.tracing and self.tracing.enabled else None,
        )
        self.sinks = [p.sink for p in parts if p]

    async def start(
        self,
        *,
        queues: QueueDepth | None = None,
        active_sessions: Callable[[], float] | None = None,
    ) -> None:
        """``queues`` and ``active_sessions`` feed the sampled gauges (queue depth, sessions)."""
        if self.metrics is not None:
            await self.metrics.start(queues=queues, active_sessions=active_sessions)

    async def close(self) -> None:
        """Stop the samplers, flush what is buffered (spans); before the record store closes."""
        if self.metrics is not None:
            await self.metrics.close()
        if self.tracing is not None:
            await self.tracing.close()
