"""Prometheus metrics from the event stream (placeholder: filled in by the observability work)."""

from __future__ import annotations

from shipyard.telemetry.events import Event


class Metrics:
    def sink(self, event: Event) -> None:
        return None
