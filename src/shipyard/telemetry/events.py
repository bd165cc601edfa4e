"""The one event stream: every run emits these; SSE, records, logs, metrics and traces read them.

Kinds and their ``data``:

=================  =====================================================================
``run.started``    ``input`` (text or messages), ``metadata``
``llm.request``    ``model``, ``step``, ``messages`` (count), ``tools`` (count)
``llm.delta``      ``text`` — streamed only, never stored
``llm.response``   ``model``, ``step``, ``content``, ``tool_calls``, ``prompt_tokens``,
                   ``completion_tokens``, ``cost_usd``, ``latency_ms``, ``finish_reason``
``tool.call``      ``id``, ``name``, ``arguments``
``tool.result``    ``id``, ``name``, ``ok``, ``output`` or ``error``, ``latency_ms``
``guard.flag``     ``guard``, ``action``, ``reason``
``run.completed``  ``output``, ``usage``, ``latency_ms``
``run.failed``     ``error`` (``code``, ``message``), ``usage``, ``latency_ms``
=================  =====================================================================
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EventType = Literal[
    "run.started",
    "llm.request",
    "llm.delta",
    "llm.response",
    "tool.call",
    "tool.result",
    "guard.flag",
    "run.completed",
    "run.failed",
]

TERMINAL: frozenset[str] = frozenset({"run.completed", "run.failed"})
EPHEMERAL: frozenset[str] = frozenset({"llm.delta"})


class Event(BaseModel):
    """One step of a run. ``seq`` orders a run's events; ``(run_id, seq)`` is unique."""

    model_config = ConfigDict(frozen=True)

    type: EventType
    run_id: str
    seq: int
    ts: float = Field(description="Unix time in seconds.")
    tenant_id: str
    agent: str
    session_id: str | None = None
    task_id: str | None = None
    trace_id: str
    span_id: str
    data: dict[str, Any] = Field(default_factory=dict)


Sink = Callable[[Event], None]
"""A subscriber. It must not block: queue the event and return."""


def new_id(prefix: str) -> str:
    """A time-ordered id (ms timestamp, then 64 random bits): sorts by creation, safe to page on."""
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{os.urandom(8).hex()}"


class Emitter:
    """Stamps events with a run's ids and sequence and hands them to every sink."""

    __slots__ = ("_ids", "_seq", "_sinks", "stream_deltas")

    def __init__(
        self,
        *,
        run_id: str,
        tenant_id: str,
        agent: str,
        trace_id: str,
        span_id: str,
        session_id: str | None = None,
        task_id: str | None = None,
        sinks: list[Sink] | None = None,
        stream_deltas: bool = False,
    ) -> None:
        self._ids: dict[str, Any] = {
            "run_id": run_id,
            "tenant_id": tenant_id,
            "agent": agent,
            "trace_id": trace_id,
            "span_id": span_id,
            "session_id": session_id,
            "task_id": task_id,
        }
        self._seq = 0
        self._sinks = sinks or []
        self.stream_deltas = stream_deltas

    @property
    def run_id(self) -> str:
        return str(self._ids["run_id"])

    @property
    def trace_id(self) -> str:
        return str(self._ids["trace_id"])

    def emit(self, type_: EventType, **data: Any) -> Event:
        if type_ in EPHEMERAL and not self.stream_deltas:
            return _DROPPED
        self._seq += 1
        event = Event(type=type_, seq=self._seq, ts=time.time(), data=data, **self._ids)
        for sink in self._sinks:
            sink(event)
        return event


_DROPPED = Event.model_construct(
    type="llm.delta",
    run_id="",
    seq=0,
    ts=0.0,
    tenant_id="",
    agent="",
    trace_id="",
    span_id="",
    data={},
)
