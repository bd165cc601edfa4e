"""One structured log record per run event (``SHIPYARD_LOG_EVENTS``).

Each record is named after its event (``event="llm.response"``), comes from the logger
``shipyard.events``, and carries the run's ids — ``run_id``, ``seq``, ``tenant_id``, ``agent``,
``trace_id``, ``span_id``, and ``parent_span_id``, ``session_id``, ``task_id`` when set — and the
event's facts (model, tokens, cost, latency, tool name, outcome; see ``_KINDS``).
``llm.delta`` (streamed tokens) is never logged. ``run.failed`` and ``guard.flag`` log at
warning, the rest at info.

Message bodies — run input and output, model content and tool calls, tool arguments, output
and error text, run metadata — are logged only when the log is built with ``bodies=True`` (the
composition root does at ``SHIPYARD_LOG_LEVEL=debug``).

Redaction is an event processor (``shipyard.telemetry.events.EventProcessor``): it changes an
event before any sink — records, streams, this log — sees it. :func:`set_redactor` installs a
process-wide hook on the bodies named above; the invoker turns it into the first processor of
every run it starts (``BodyRedaction``). Prefer passing processors to ``App(event_processors=...)``.

The sink runs on the hot path, for every event of every run: the levels that are on and what
each kind logs are decided once, when the log is built (after ``configure_logging``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import structlog

from shipyard.telemetry.events import Event, EventType
from shipyard.telemetry.logging import ABSENT, KindWriter, kind_writer

LOGGER = "shipyard.events"

Redactor = Callable[[Event, dict[str, Any]], dict[str, Any]]
"""Gets an event and its body fields (log key -> value); returns the fields that may be logged.

The dict is the hook's to change, but its values are the event's own (other sinks read them):
replace a value rather than change it in place.
"""

_redactor: Redactor | None = None


def set_redactor(redactor: Redactor | None) -> Redactor | None:
    """Install the hook every event body passes through (``None``: bodies pass unchanged).

    The hook runs as an event processor (``BodyRedaction``) in every run started after this
    call, so what it removes or replaces is gone from the records, the streams and the log
    alike. Returns the hook it replaces, to put back later. If it raises (or returns no
    dict), the event goes on without its bodies and with ``redaction_error`` (fail closed).
    Kept for compatibility: ``App(event_processors=[...])`` is the general form.
    """
    global _redactor
    previous, _redactor = _redactor, redactor
    return previous


def current_redactor() -> Redactor | None:
    """The hook :func:`set_redactor` installed, if any."""
    return _redactor


class BodyRedaction:
    """The event processor for a ``Redactor``: hands it each event's bodies (under their log
    keys) and puts back what it returns; a failing hook drops the bodies (fail closed)."""

    __slots__ = ("_redactor",)

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor

    def process(self, event: Event) -> list[Event]:
        kind = _KINDS.get(event.type)  # type: ignore[call-overload]
        if kind is None or not kind.bodies:
            return [event]
        body: dict[str, Any] = {}
        _pick(kind.bodies, event.data, body)
        if not body:
            return [event]
        redacted = _redacted(self._redactor, event, body)
        data = {k: v for k, v in event.data.items() if k not in _BODY_SOURCES}
        for key, value in redacted.items():
            data[_BODY_KEYS.get(key, key)] = value
        return [event.model_copy(update={"data": data})]

    def flush(self) -> list[Event]:
        return []


_Fields = tuple[tuple[str, str, str | None], ...]
"""(log key, data key, key inside the data value or ``None``) for each field a kind logs."""


def _fields(*specs: str) -> _Fields:
    """``"key"``, ``"log_key=data_key"`` or ``"log_key=data_key.inner_key"``."""
    parsed = []
    for spec in specs:
        key, _, source = spec.partition("=")
        source = source or key
        outer, _, inner = source.partition(".")
        parsed.append((key, outer, inner or None))
    return tuple(parsed)


@dataclass(frozen=True, slots=True)
class _Kind:
    level: int
    facts: _Fields
    bodies: _Fields = ()


_INFO, _WARNING = logging.INFO, logging.WARNING

_KINDS: Mapping[EventType, _Kind] = MappingProxyType(
    {
        "run.started": _Kind(_INFO, _fields("parent_run_id"), _fields("input", "metadata")),
        "llm.request": _Kind(_INFO, _fields("model", "step", "messages", "tools")),
        "llm.response": _Kind(
            _INFO,
            _fields(
                "model",
                "step",
                "prompt_tokens",
                "completion_tokens",
                "cost_usd",
                "latency_ms",
                "finish_reason",
            ),
            _fields("content", "tool_calls"),
        ),
        "llm.route": _Kind(
            _INFO,
            _fields("router", "chosen", "decided", "score", "reason", "deployment", "saved_usd")
            + _fields("error"),
        ),
        "tool.call": _Kind(_INFO, _fields("tool=name", "tool_call_id=id"), _fields("arguments")),
        "tool.result": _Kind(
            _INFO,
            _fields("tool=name", "tool_call_id=id", "ok", "error_kind", "latency_ms"),
            _fields("output", "error_message=error"),
        ),
        "guard.flag": _Kind(_WARNING, _fields("guard", "action", "surface", "score", "types")),
        "guard.block": _Kind(_WARNING, _fields("guard", "action", "surface", "score", "types")),
        "egress.request": _Kind(
            _INFO,
            _fields("method", "scheme", "host", "port", "allowed", "status", "bytes")
            + _fields("latency_ms", "rule", "reason", "error"),
        ),
        "budget.exceeded": _Kind(_WARNING, _fields("policy", "reason", "model")),
        "llm.cached": _Kind(
            _INFO, _fields("model", "cache", "similarity", "saved_usd", "saved_tokens")
        ),
        "llm.cache_miss": _Kind(_INFO, _fields("model", "cache", "similarity")),
        "run.completed": _Kind(_INFO, _fields("usage", "latency_ms"), _fields("output")),
        "run.failed": _Kind(
            _WARNING,
            _fields("error_code=error.code", "error_message=error.message", "usage", "latency_ms"),
        ),
    }
)
"""What each kind logs. Fields not named here are never logged; ``llm.delta`` is absent."""


_BODY_KEYS: Mapping[str, str] = MappingProxyType(
    {key: outer for kind in _KINDS.values() for key, outer, _ in kind.bodies}
)
"""Log key of a body -> the data key it comes from (``error_message`` -> ``error``)."""
_BODY_SOURCES = frozenset(_BODY_KEYS.values())


_IDS = (
    "logger",
    "run_id",
    "seq",
    "tenant_id",
    "agent",
    "trace_id",
    "span_id",
    "parent_span_id",
    "session_id",
    "task_id",
)
"""The fields every record starts with (the last three only when set)."""


@dataclass(frozen=True, slots=True)
class _Plan:
    write: KindWriter
    facts: _Fields
    """The kind's facts and, when bodies are logged, its bodies."""


class EventLog:
    """The event stream's log sink: ``sink`` writes one record per event."""

    __slots__ = ("_plans",)

    def __init__(self, *, bodies: bool = False) -> None:
        """``bodies``: log message bodies (as the run's processors left them). Reads the logging
        configuration as it is now: configure logging first."""
        log = structlog.get_logger(LOGGER).bind(logger=LOGGER)
        self._plans: dict[str, _Plan] = {}
        for kind, spec in _KINDS.items():
            facts = spec.facts + spec.bodies if bodies else spec.facts
            keys = (*_IDS, *(key for key, _, _ in facts), "redaction_error")
            write = kind_writer(spec.level, kind, keys) or _through_structlog(
                log, spec.level, kind, keys
            )
            if write is not None:
                self._plans[kind] = _Plan(write, facts)

    @property
    def enabled(self) -> bool:
        """Whether any record is written at the configured level."""
        return bool(self._plans)

    def sink(self, event: Event) -> None:
        plan = self._plans.get(event.type)
        if plan is None:  # llm.delta, or a level that is off
            return
        values = [
            LOGGER,
            event.run_id,
            event.seq,
            event.tenant_id,
            event.agent,
            event.trace_id,
            event.span_id,
            ABSENT if event.parent_span_id is None else event.parent_span_id,
            ABSENT if event.session_id is None else event.session_id,
            ABSENT if event.task_id is None else event.task_id,
        ]
        data = event.data
        for _, outer, inner in plan.facts:
            value = data.get(outer, ABSENT)
            if inner is not None and value is not ABSENT:
                value = value.get(inner, ABSENT) if isinstance(value, dict) else ABSENT
            values.append(value)
        values.append(data.get("redaction_error", ABSENT))
        plan.write(event.ts, values)


def _through_structlog(log: Any, level: int, kind: str, keys: tuple[str, ...]) -> KindWriter | None:
    """A writer through structlog's own chain, when logging was configured elsewhere (a host
    application's configuration): slower, but as that configuration says."""
    if not log.is_enabled_for(level):
        return None
    method = log.warning if level == _WARNING else log.info

    def write(ts: float, values: list[Any]) -> None:
        method(
            kind,
            **{
                k: v for k, v in zip(keys, values, strict=True) if v is not ABSENT and k != "logger"
            },
        )

    return write


def _pick(spec: _Fields, data: dict[str, Any], into: dict[str, Any]) -> None:
    for key, outer, inner in spec:
        if outer in data:
            value = data[outer]
            if inner is None:
                into[key] = value
            elif isinstance(value, dict) and inner in value:
                into[key] = value[inner]


def _redacted(redactor: Redactor, event: Event, body: dict[str, Any]) -> dict[str, Any]:
    try:
        redacted = redactor(event, body)
        if not isinstance(redacted, dict):
            raise TypeError(f"the redaction hook returned {type(redacted).__name__}, not a dict")
    except Exception as exc:  # fail closed: a broken hook must neither leak bodies nor fail runs
        return {"redaction_error": type(exc).__name__}
    return redacted
