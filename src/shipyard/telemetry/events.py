"""The one event stream: every run emits these; SSE, records, logs, metrics and traces read them.

Kinds and their ``data``:

=================  =====================================================================
``run.started``    ``input`` (text or messages), ``metadata``, ``parent_run_id`` (a child run)
``llm.request``    ``model``, ``step``, ``messages`` (count), ``tools`` (count)
``llm.route``      ``router``, ``candidates``, ``chosen`` (the model that answered), ``decided``
                   (the strategy's pick), ``score``, ``reason``, ``deployment``, ``failures``,
                   ``saved_usd`` (against the strongest candidate), ``error`` if none answered
``llm.delta``      ``text`` — streamed only, never stored
``llm.response``   ``model``, ``step``, ``content``, ``tool_calls``, ``prompt_tokens``,
                   ``completion_tokens``, ``cost_usd``, ``latency_ms``, ``finish_reason``
``tool.call``      ``id``, ``name``, ``arguments``
``tool.result``    ``id``, ``name``, ``ok``, ``output`` or ``error``, ``latency_ms``
``guard.flag``     ``guard`` (the detector), ``action``, ``surface``, ``score``, ``types``
                   (entity types found; never the text), ``stream`` (found in streamed deltas)
``guard.block``    the same, for a ``block`` decision (docs/guards.md)
``egress.request`` ``method``, ``scheme``, ``host``, ``port``, ``allowed``, ``status``, ``bytes``,
                   ``latency_ms``; ``rule`` and ``reason`` when denied, ``error`` when it
                   failed (one per outbound request of ``ctx.http``, each redirect hop too)
``run.completed``  ``output``, ``usage``, ``latency_ms``
``run.failed``     ``error`` (``code``, ``message``), ``usage``, ``latency_ms``
=================  =====================================================================

An agent adds its own kinds with ``ctx.emit("app.progress", done=3, of=10)``: a custom type is
namespaced — lower-case words joined by dots, at least two, such as ``app.progress`` or
``acme.search.hit`` — outside Shipyard's own namespaces (``RESERVED_NAMESPACES``), and its
``data`` must serialise to JSON. ``emit`` checks both when it is called and raises there
(``shipyard.errors.InvalidEvent``, a ``ValueError``), before the event takes a sequence
number: a refused event leaves no gap in ``seq``.

Processors: an ``Emitter`` hands each event first to its run's ``EventProcessor``s, in order,
and only what they let through reaches the sinks (records, SSE and WebSocket streams, logs,
metrics, traces). A processor may change an event (redact), annotate it, drop it, or hold it
back and release it later; sinks get the events that come out numbered ``1, 2, ...`` in the
order they come out, so a dropped event leaves no gap in ``seq``. Before a run's terminal event
every processor is flushed, in order.

Spans: ``run.*`` events carry the run's span (its parent is the caller's span, from
``traceparent`` or the agent that called this one); ``llm.*`` and ``tool.*`` events carry their
own step's span, whose parent is the run's span; ``egress.request`` the span of the tool that
made the request (the run's, outside a tool).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticSerializationError, to_json

from shipyard.errors import InvalidEvent

EventType = Literal[
    "run.started",
    "llm.request",
    "llm.route",
    "llm.delta",
    "llm.response",
    "tool.call",
    "tool.result",
    "guard.flag",
    "guard.block",
    "egress.request",
    "run.completed",
    "run.failed",
    "budget.exceeded",
    "llm.cached",
    "llm.cache_miss",
]

BUILTIN_TYPES: frozenset[str] = frozenset(get_args(EventType))
RESERVED_NAMESPACES: frozenset[str] = frozenset(
    {"run", "llm", "tool", "guard", "egress", "task", "session", "shipyard", "budget"}
)
"""The first word of Shipyard's own event types, present and future: no custom type uses them."""
CUSTOM_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
CUSTOM_TYPE_MAX = 100
_CUSTOM_TYPE = re.compile(CUSTOM_TYPE_PATTERN)


def check_custom_type(type_: str) -> str:
    """``type_`` if it is a valid custom event type, else ``InvalidEvent`` saying why."""
    if not isinstance(type_, str):
        raise InvalidEvent(f"an event type is a string, not {type(type_).__name__}")
    if len(type_) > CUSTOM_TYPE_MAX or not _CUSTOM_TYPE.match(type_):
        raise InvalidEvent(
            f"custom event type {type_[:CUSTOM_TYPE_MAX]!r} must be namespaced: lower-case words "
            f"joined by dots, such as 'app.progress' (at most {CUSTOM_TYPE_MAX} characters)"
        )
    if type_.partition(".")[0] in RESERVED_NAMESPACES:
        reserved = ", ".join(f"'{n}.'" for n in sorted(RESERVED_NAMESPACES))
        raise InvalidEvent(
            f"event type {type_!r} is in a namespace of Shipyard's own ({reserved}); "
            "use your own, such as 'app.'"
        )
    return type_


CustomEventType = Annotated[
    str,
    StringConstraints(pattern=CUSTOM_TYPE_PATTERN, max_length=CUSTOM_TYPE_MAX),
    AfterValidator(check_custom_type),
]
"""An agent's own event kind (see the module docstring)."""

TERMINAL: frozenset[str] = frozenset({"run.completed", "run.failed"})
EPHEMERAL: frozenset[str] = frozenset({"llm.delta"})


class Event(BaseModel):
    """One step of a run. ``seq`` orders a run's events; ``(run_id, seq)`` is unique."""

    model_config = ConfigDict(frozen=True)

    type: EventType | CustomEventType = Field(union_mode="left_to_right")
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


class EventProcessor(Protocol):
    """A stage every event of a run passes through before any sink. One instance per run
    (``ProcessorFactory``), so it may keep state, such as deltas it holds back."""

    def process(self, event: Event) -> Sequence[Event]:
        """What goes on in place of ``event``: itself, a changed copy
        (``event.model_copy(update={"data": ...})``), nothing (dropped or held back), or
        events held back before, then it."""
        ...

    def flush(self) -> Sequence[Event]:
        """What is still held back, released in order (called before the run's terminal
        event)."""
        ...


ProcessorFactory = Callable[[], EventProcessor]
"""Makes a run's processor: a processor class, or a function returning a shared instance."""


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

    __slots__ = ("_ids", "_processors", "_seq", "_sinks", "stream_deltas")

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
        processors: Sequence[EventProcessor] = (),
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
        self._processors = tuple(processors)
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

    def emit(self, type_: str, /, span_id: str | None = None, **data: Any) -> Event:
        """``span_id``: the step's own span (model and tool calls); default the run's. A custom
        ``type_`` is checked first (``InvalidEvent``), and takes no ``seq`` if refused. Returns
        the event as emitted (before the processors, if the run has any)."""
        if type_ not in BUILTIN_TYPES:
            _check_custom(type_, data)
        elif type_ in EPHEMERAL and not self.stream_deltas:
            return _DROPPED
        if self._processors:
            return self._emit_processed(type_, span_id, data)
        seq = self._seq + 1
        if span_id is None:
            event = Event(type=type_, seq=seq, ts=time.time(), data=data, **self._ids)
        else:
            ids = {**self._ids, "span_id": span_id, "parent_span_id": self._ids["span_id"]}
            event = Event(type=type_, seq=seq, ts=time.time(), data=data, **ids)
        self._seq = seq
        for sink in self._sinks:
            sink(event)
        return event

    def _emit_processed(self, type_: str, span_id: str | None, data: dict[str, Any]) -> Event:
        if type_ in TERMINAL:
            self._flush()
        seq = self._seq + 1  # its number if it leaves the processors first (as most do)
        if span_id is None:
            event = Event(type=type_, seq=seq, ts=time.time(), data=data, **self._ids)
        else:
            ids = {**self._ids, "span_id": span_id, "parent_span_id": self._ids["span_id"]}
            event = Event(type=type_, seq=seq, ts=time.time(), data=data, **ids)
        self._deliver(self._through(0, [event]))
        return event

    def _through(self, start: int, events: Sequence[Event]) -> Sequence[Event]:
        """``events`` through the processors from ``start`` on."""
        for processor in self._processors[start:]:
            if not events:
                break
            events = [out for event in events for out in processor.process(event)]
        return events

    def _flush(self) -> None:
        """Each processor's held-back events, through the processors after it, in order."""
        for at, processor in enumerate(self._processors):
            self._deliver(self._through(at + 1, processor.flush()))

    def _deliver(self, events: Sequence[Event]) -> None:
        """Number ``events`` in the order they leave; one that already has its number (made
        with it, passed on as it was) goes as it is, any other is a copy numbered anew."""
        for event in events:
            self._seq += 1
            seq = self._seq
            numbered = event if event.seq == seq else event.model_copy(update={"seq": seq})
            for sink in self._sinks:
                sink(numbered)


def _check_custom(type_: str, data: dict[str, Any]) -> None:
    check_custom_type(type_)
    try:
        to_json(data)  # as every sink will: the SSE stream, the records, the log
    except PydanticSerializationError as exc:
        raise InvalidEvent(
            f"the data of event {type_!r} does not serialise to JSON: {exc}"
        ) from None


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
