"""A finished span as plain data: what the trace sink collects and ``GET /v1/traces`` shows.

``GET /v1/traces`` builds these from a trace's stored run events (``telemetry.tracing.spans_of``
over ``RecordStore.trace_events``); the type lives apart from the OpenTelemetry SDK, so that
what only shows spans does not import it.
"""

from __future__ import annotations

from typing import Any, TypedDict

__all__ = ["SpanRow"]


class SpanRow(TypedDict):
    """A finished span as the embedded trace view shows it.

    Ids are lowercase hex (32 digits for the trace, 16 for spans); times are Unix nanoseconds;
    ``kind`` is internal, server, client, producer or consumer; ``status`` unset, ok or error;
    ``tenant_id`` comes from the span's ``shipyard.tenant_id`` (None outside any run); each of
    ``events`` is ``{name, time_ns, attributes}``.
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None
    tenant_id: str | None
    name: str
    kind: str
    service: str
    start_ns: int
    end_ns: int
    status: str
    status_message: str | None
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
