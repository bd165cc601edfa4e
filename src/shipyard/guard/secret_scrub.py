"""An event processor that blanks every secret value this process has read, wherever it shows.

Secrets reach runs only at the edges (a provider's client, a tool's outgoing request), so no
event should hold one — but a service that echoes a header, or a model that repeats what it
was told, could put one in a tool result or an answer. This stage, first before every sink
(the stream, the records, the log, metrics and traces), replaces each value the secret cache
has handed out with ``[secret]``. With no secret read yet it passes events through untouched.
A value split across two streamed ``llm.delta`` events is not caught here (the record of the
whole answer, ``llm.response``, is).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shipyard.stores.secrets.refs import SecretCache
from shipyard.telemetry.events import Event

MASK = "[secret]"
MIN_LENGTH = 6
"""Shorter values are not scrubbed: a 3-character "secret" would blank ordinary words."""


class SecretScrubber:
    """Shared by every run (it holds no per-run state): ``lambda: scrubber`` is its factory."""

    def __init__(self, secrets: SecretCache) -> None:
        self._secrets = secrets

    def process(self, event: Event) -> Sequence[Event]:
        values = [v for v in self._secrets.values_read() if len(v) >= MIN_LENGTH]
        if not values or not _holds(event.data, values):
            return [event]
        return [event.model_copy(update={"data": _scrub(event.data, values)})]

    def flush(self) -> Sequence[Event]:
        return []


def _holds(data: Any, values: list[str]) -> bool:
    if isinstance(data, str):
        return any(v in data for v in values)
    if isinstance(data, dict):
        return any(_holds(k, values) or _holds(v, values) for k, v in data.items())
    if isinstance(data, list | tuple):
        return any(_holds(item, values) for item in data)
    return False


def _scrub(data: Any, values: list[str]) -> Any:
    if isinstance(data, str):
        for value in values:
            data = data.replace(value, MASK)
        return data
    if isinstance(data, dict):
        return {_scrub(k, values): _scrub(v, values) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_scrub(item, values) for item in data]
    return data


def scrub_text(text: str, secrets: SecretCache) -> str:
    """``text`` with the values ``secrets`` has read blanked (for error messages)."""
    return str(_scrub(text, [v for v in secrets.values_read() if len(v) >= MIN_LENGTH]))
