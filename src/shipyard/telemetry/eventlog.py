"""One structured log record per run event (placeholder: filled in by the observability work)."""

from __future__ import annotations

from shipyard.telemetry.events import Event


class EventLog:
    def __init__(self, *, bodies: bool = False) -> None:
        self._bodies = bodies

    def sink(self, event: Event) -> None:
        return None
