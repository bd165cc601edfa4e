"""OpenTelemetry spans from the event stream (placeholder: filled in by the observability work)."""

from __future__ import annotations

from shipyard.telemetry.events import Event


class Tracing:
    def sink(self, event: Event) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
