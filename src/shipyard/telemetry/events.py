"""The one event stream: every run emits these; SSE, records, logs, metrics and traces read them.

Kinds and their ``data``:

=================  =====================================================================
``run.started``    ``input`` (text or messages), ``metadata``, ``parent_run_id`` (a child run)
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

Spans: ``run.*`` events carry the run's span (its parent is the caller's span, from
``traceparent`` or the agent that called this one); ``llm.*`` and ``tool.*`` events carry their
own step's span, whose parent is the run's span.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
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
    parent_span_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


Sink = Callable[[Event], None]
"""A subscriber. It must not block: queue the event and return."""


def new_span_id() -> str:
    return os.urandom(8).hex()


@dataclass(frozen=True, slots=True)
class Step:
    """Where code runs inside a run: what a child run started from here (an agent a tool
    calls, a task it submits) takes as its parent run and parent span."""

    run_id: str
    tenant_id: str
    trace_id: str
    span_id: str


current_step: ContextVar[Step | None] = ContextVar("shipyard_current_step", default=None)
"""Set by the agent loop around each tool call (asyncio copies it into tasks the tool starts)."""


def new_id(prefix: str) -> str:
    """A time-ordered id (ms timestamp, then 64 random bits): sorts by creation, safe to page on."""
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{os.urandom(8).hex()}"


class Emitter:
    """Stamps events with a run's ids and sequence and hands them to every sink."""

    __slots__ = ("_ids", "_seq", "_sinks", "stream_deltas")

    # the run's own span, and the caller's span it hangs under

    def __init__(
        self,
        *,
        run_id: str,
        tenant_id: str,
        agent: str,
        trace_id: str,
        span_id: str,
        parent_span_id: str | None = None,
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
            "parent_span_id": parent_span_id,
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

    @property
    def span_id(self) -> str:
        return str(self._ids["span_id"])

    @property
    def tenant_id(self) -> str:
        return str(self._ids["tenant_id"])

    def emit(self, type_: EventType, /, span_id: str | None = None, **data: Any) -> Event:
        """``span_id``: the step's own span (model and tool calls); default the run's."""
        if type_ in EPHEMERAL and not self.stream_deltas:
            return _DROPPED
        self._seq += 1
        if span_id is None:
            event = Event(type=type_, seq=self._seq, ts=time.time(), data=data, **self._ids)
        else:
            ids = {**self._ids, "span_id": span_id, "parent_span_id": self._ids["span_id"]}
            event = Event(type=type_, seq=self._seq, ts=time.time(), data=data, **ids)
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
