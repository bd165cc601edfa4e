"""OpenTelemetry spans from the event stream: one per run, per model call, per tool call.

========================  ========  ==========================================================
span                      kind      from, and attributes (GenAI semantic conventions)
========================  ========  ==========================================================
``invoke_agent {agent}``  internal  ``run.started`` to ``run.completed``/``run.failed``:
                                    ``gen_ai.operation.name``, ``gen_ai.agent.name``,
                                    ``gen_ai.conversation.id`` (session), ``gen_ai.usage.*``,
                                    ``shipyard.run_id|tenant_id|session_id|task_id|parent_run_id``
``chat {model}``          client    ``llm.request`` to ``llm.response``: ``gen_ai.request.model``,
                                    ``gen_ai.provider.name`` (and the older ``gen_ai.system``),
                                    ``gen_ai.response.finish_reasons``, ``gen_ai.usage.*``
``execute_tool {name}``   internal  ``tool.call`` to ``tool.result``: ``gen_ai.tool.name``,
                                    ``gen_ai.tool.call.id``, ``gen_ai.tool.type``
========================  ========  ==========================================================

Every span also has ``shipyard.run_id`` and ``shipyard.tenant_id``, and, when it fails, status
ERROR and ``error.type`` (the run's error code, the tool error's kind). ``usage.cost_usd`` goes in
``shipyard.usage.cost_usd``. No message content goes into spans. A ``guard.flag`` becomes a
span event; so does an ``egress.request``, on the tool's span (``shipyard.egress.request``:
``http.request.method``, ``server.address``, ``server.port``, ``http.response.status_code``,
``shipyard.egress.allowed|rule|bytes|latency_ms``). A step still open when its run ends (a
model call that raised) ends with the run.

A span's ids are exactly its events' ids, so logs, stored events and traces agree and a child
started in another process (a task's worker, an agent calling another) hangs under the right
span. So spans are not made with ``Tracer.start_span``, which draws ids of its own: an open
span is a small record here; when it ends, it goes to ``collect`` (if given) and, when
OpenTelemetry span processors are configured (the OTLP exporter's), the SDK's
``ReadableSpan`` is built with those ids and handed to them. With neither, the sink does
nothing. Measured for a run with one model call: ~13 µs with an SDK processor, against ~35 µs
through ``start_span``.

The record store keeps no spans of its own: the stored run events carry every id and fact a
span needs, and ``spans_of`` replays a trace's events through this same mapping when
``GET /v1/traces/{id}`` asks (writing spans too cost ~60 µs a run on SQLite: a quarter of a
stateless run).

Export follows the standard variables (see ``exporters``); ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` make the resource; ``OTEL_SDK_DISABLED=true`` turns the export
off.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event as SpanEvent
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from shipyard._version import __version__
from shipyard.telemetry.events import Event
from shipyard.telemetry.exporters import otlp_processor, otlp_wanted, shutdown
from shipyard.telemetry.spans import SpanRow

log = structlog.get_logger(__name__)

__all__ = ["SERVICE", "Tracing", "spans_of"]

SERVICE = "shipyard"
MAX_OPEN = 50_000
"""Spans open at once, beyond which the oldest is forgotten (runs always end, so only a bug
could get here: the bound keeps it from becoming a leak)."""

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_KINDS = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT}
_MESSAGE_MAX = 500


@dataclass(slots=True)
class _Open:
    """A span begun and not yet ended (ids as the events carry them: hex)."""

    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    tenant_id: str
    start_ns: int
    attributes: dict[str, Any]
    run: bool
    """A run's span (its parent is the caller's, often in another process), not a step's."""
    events: list[dict[str, Any]] | None = None
    steps: list[str] | None = None
    """A run's model and tool calls (span ids), ended with it if still open."""


class Tracing:
    """The trace sink: spans from events, to the span processors (the OTLP exporter's, when
    the standard variables ask for it) and to ``collect``."""

    def __init__(
        self,
        *,
        collect: Callable[[SpanRow], None] | None = None,
        service: str = SERVICE,
        processors: Sequence[SpanProcessor] = (),
        export: bool = True,
    ) -> None:
        """``collect``: gets each finished span as a row (``spans_of``).
        ``service``: the ``service.name`` unless ``OTEL_SERVICE_NAME`` says otherwise.
        ``processors``: more OpenTelemetry span processors (tests, other exporters).
        ``export``: add the OTLP exporter when the standard variables ask for it."""
        enabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true"
        self.resource = Resource.create(
            {"service.name": os.environ.get("OTEL_SERVICE_NAME") or service}
        )
        self.service = str(self.resource.attributes["service.name"])
        self._collect = collect
        self._processors: list[SpanProcessor] = list(processors) if enabled else []
        if enabled and export and otlp_wanted():
            self._processors.append(otlp_processor())
        self._scope = InstrumentationScope("shipyard", __version__)
        self._open: dict[str, _Open] = {}
        self.forgotten = 0
        self.failures = 0

    @property
    def processors(self) -> tuple[SpanProcessor, ...]:
        return tuple(self._processors)

    @property
    def enabled(self) -> bool:
        """Whether spans go anywhere (no exporter, or ``OTEL_SDK_DISABLED=true``: nowhere)."""
        return self._collect is not None or bool(self._processors)

    async def close(self) -> None:
        """Flush the processors (in a thread: an export may take seconds)."""
        if self._processors:
            await asyncio.to_thread(shutdown, self._processors)

    def sink(self, event: Event) -> None:
        if self._collect is None and not self._processors:
            return
        try:
            self._on(event)
        except Exception:  # a telemetry bug must never fail a run
            self.failures += 1
            if _power_of_ten(self.failures):
                log.exception("tracing.sink_failed", event_type=event.type, failures=self.failures)

    # -- events to spans ----------------------------------------------------------------------

    def _on(self, e: Event) -> None:
        match e.type:
            case "run.started":
                self._begin(e, f"invoke_agent {e.agent}", "internal", _run_attributes(e))
            case "llm.request":
                name, attributes = _chat_attributes(e)
                self._begin(e, name, "client", attributes)
            case "tool.call":
                name, attributes = _tool_attributes(e)
                self._begin(e, name, "internal", attributes)
            case "llm.response":
                d = e.data
                usage = _usage(
                    d.get("prompt_tokens"), d.get("completion_tokens"), d.get("cost_usd")
                )
                if d.get("finish_reason"):
                    usage["gen_ai.response.finish_reasons"] = (str(d["finish_reason"]),)
                self._end(e, usage)
            case "tool.result":
                failed = not e.data.get("ok")
                self._end(e, {}, str(e.data.get("error_kind") or "tool_error") if failed else None)
            case "run.completed" | "run.failed":
                self._end_run(e)
            case _:
                marks = _SPAN_EVENTS.get(e.type)  # guard, egress, route: events of a span
                if marks is not None:
                    self._add_event(e, f"shipyard.{e.type}", marks(e))

    def _begin(self, e: Event, name: str, kind: str, attributes: dict[str, Any]) -> None:
        if len(self._open) >= MAX_OPEN:
            self._forget_oldest()
        is_run = e.type == "run.started"
        if not is_run and e.parent_span_id:
            run = self._open.get(e.parent_span_id)
            if run is not None:
                if run.steps is None:
                    run.steps = []
                run.steps.append(e.span_id)
        ids = e.trace_id, e.span_id, e.parent_span_id, e.tenant_id
        self._open[e.span_id] = _Open(name, kind, *ids, _ns(e.ts), attributes, is_run)

    def _end(self, e: Event, attributes: dict[str, Any], error: str | None = None) -> None:
        span = self._open.pop(e.span_id, None)
        if span is not None:
            span.attributes.update(attributes)
            self._finish(span, _ns(e.ts), error)

    def _end_run(self, e: Event) -> None:
        run = self._open.pop(e.span_id, None)
        if run is None:
            return
        usage = e.data.get("usage") or {}
        tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
        run.attributes.update(_usage(*tokens, usage.get("cost_usd")))
        error = None
        if e.type == "run.failed":
            failure = e.data.get("error") or {}
            code = str(failure.get("code") or "run_failed")
            run.attributes["error.type"] = code
            error = str(failure.get("message") or code)[:_MESSAGE_MAX]
        end_ns = _ns(e.ts)
        for step_id in run.steps or ():
            step = self._open.pop(step_id, None)
            if step is not None:  # the run ended before it: a model call that raised
                if error is not None:
                    step.attributes["error.type"] = run.attributes["error.type"]
                self._finish(step, end_ns, error)
        self._finish(run, end_ns, error)

    def _add_event(self, e: Event, name: str, attributes: dict[str, Any]) -> None:
        span = self._open.get(e.span_id)
        if span is not None:
            if span.events is None:
                span.events = []
            span.events.append({"name": name, "time_ns": _ns(e.ts), "attributes": attributes})

    def _finish(self, span: _Open, end_ns: int, error: str | None) -> None:
        """``error``: the status message of a failed span (None: status unset)."""
        end_ns = max(end_ns, span.start_ns)
        if self._collect is not None:
            self._collect(
                SpanRow(
                    trace_id=span.trace_id,
                    span_id=span.span_id,
                    parent_span_id=span.parent_span_id,
                    tenant_id=span.tenant_id,
                    name=span.name,
                    kind=span.kind,
                    service=self.service,
                    start_ns=span.start_ns,
                    end_ns=end_ns,
                    status="unset" if error is None else "error",
                    status_message=error,
                    attributes=span.attributes,
                    events=span.events or [],
                )
            )
        if self._processors:
            finished = self._readable(span, end_ns, error)
            for processor in self._processors:
                processor.on_end(finished)

    def _readable(self, span: _Open, end_ns: int, error: str | None) -> ReadableSpan:
        """The span as the OpenTelemetry SDK's processors and exporters take it."""
        trace_id = int(span.trace_id, 16)
        parent = None
        if span.parent_span_id:
            parent = SpanContext(
                trace_id, int(span.parent_span_id, 16), is_remote=span.run, trace_flags=_SAMPLED
            )
        return ReadableSpan(
            name=span.name,
            context=SpanContext(
                trace_id, int(span.span_id, 16), is_remote=False, trace_flags=_SAMPLED
            ),
            parent=parent,
            resource=self.resource,
            attributes=span.attributes,
            events=[SpanEvent(e["name"], e["attributes"], e["time_ns"]) for e in span.events or ()],
            kind=_KINDS[span.kind],
            status=Status(StatusCode.UNSET) if error is None else Status(StatusCode.ERROR, error),
            start_time=span.start_ns,
            end_time=end_ns,
            instrumentation_scope=self._scope,
        )

    def _forget_oldest(self) -> None:
        del self._open[next(iter(self._open))]
        self.forgotten += 1
        if _power_of_ten(self.forgotten):
            log.warning("tracing.open_spans_full", limit=MAX_OPEN, forgotten=self.forgotten)


# -- attributes -----------------------------------------------------------------------------------


def spans_of(events: Sequence[Event]) -> list[SpanRow]:
    """The finished spans of stored events, by start time: ``GET /v1/traces`` over a trace's
    events as the record store keeps them (``RecordStore.trace_events``).

    A run still going has no span yet; its finished model and tool calls do.
    """
    rows: list[SpanRow] = []
    replay = Tracing(collect=rows.append, export=False)
    for event in events:
        replay.sink(event)
    for row in rows:  # as JSON holds them (the SDK takes sequences as tuples)
        row["attributes"] = {
            k: list(v) if isinstance(v, tuple) else v for k, v in row["attributes"].items()
        }
    rows.sort(key=lambda row: (row["start_ns"], row["span_id"]))
    return rows


def _run_attributes(e: Event) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": e.agent,
        "shipyard.run_id": e.run_id,
        "shipyard.tenant_id": e.tenant_id,
    }
    if e.session_id:
        attributes["gen_ai.conversation.id"] = e.session_id
        attributes["shipyard.session_id"] = e.session_id
    if e.task_id:
        attributes["shipyard.task_id"] = e.task_id
    parent_run_id = e.data.get("parent_run_id")
    if parent_run_id:
        attributes["shipyard.parent_run_id"] = str(parent_run_id)
    return attributes


def _chat_attributes(e: Event) -> tuple[str, dict[str, Any]]:
    """The span name and attributes of a model call, from its ``provider:model`` reference."""
    reference = str(e.data.get("model") or "")
    provider, known, model = reference.partition(":")
    if not known:
        provider, model = "", reference
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "shipyard.run_id": e.run_id,
        "shipyard.tenant_id": e.tenant_id,
    }
    if provider:
        attributes["gen_ai.provider.name"] = provider
        attributes["gen_ai.system"] = provider
    step = e.data.get("step")
    if isinstance(step, int):
        attributes["shipyard.step"] = step
    return f"chat {model}", attributes


def _tool_attributes(e: Event) -> tuple[str, dict[str, Any]]:
    name = str(e.data.get("name"))
    return f"execute_tool {name}", {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": name,
        "gen_ai.tool.call.id": str(e.data.get("id")),
        "gen_ai.tool.type": "function",
        "shipyard.run_id": e.run_id,
        "shipyard.tenant_id": e.tenant_id,
    }


def _guard_attributes(e: Event) -> dict[str, Any]:
    return {
        f"shipyard.guard.{k}": str(e.data[k])
        for k in ("guard", "action", "surface", "score", "types", "reason")
        if e.data.get(k) is not None
    }


_EGRESS_ATTRIBUTES = (
    ("method", "http.request.method"),
    ("host", "server.address"),
    ("port", "server.port"),
    ("status", "http.response.status_code"),
    ("allowed", "shipyard.egress.allowed"),
    ("rule", "shipyard.egress.rule"),
    ("bytes", "shipyard.egress.bytes"),
    ("latency_ms", "shipyard.egress.latency_ms"),
    ("error", "error.type"),
)


def _route_attributes(e: Event) -> dict[str, Any]:
    """The router's decision on the model call's span (docs/routing.md)."""
    d = e.data
    out: dict[str, Any] = {
        f"shipyard.route.{k}": str(d[k]) for k in ("router", "chosen", "reason") if d.get(k)
    }
    if d.get("score") is not None:
        out["shipyard.route.score"] = float(d["score"])
    if d.get("saved_usd") is not None:
        out["shipyard.route.saved_usd"] = float(d["saved_usd"])
    return out


def _egress_attributes(e: Event) -> dict[str, Any]:
    data = e.data
    return {name: data[key] for key, name in _EGRESS_ATTRIBUTES if data.get(key) is not None}


_SPAN_EVENTS: dict[str, Callable[[Event], dict[str, Any]]] = {
    "guard.flag": _guard_attributes,
    "guard.block": _guard_attributes,
    "egress.request": _egress_attributes,
    "llm.route": _route_attributes,
}


def _usage(input_tokens: Any, output_tokens: Any, cost_usd: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if isinstance(input_tokens, int):
        attributes["gen_ai.usage.input_tokens"] = input_tokens
    if isinstance(output_tokens, int):
        attributes["gen_ai.usage.output_tokens"] = output_tokens
    if isinstance(cost_usd, int | float):
        attributes["shipyard.usage.cost_usd"] = float(cost_usd)
    return attributes


def _ns(ts: float) -> int:
    return int(ts * 1_000_000_000)


def _power_of_ten(n: int) -> bool:
    """1, 10, 100...: how often a repeated problem is logged."""
    return str(n).rstrip("0") == "1"
