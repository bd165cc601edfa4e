"""Trace context arriving over HTTP: the caller's span becomes the parent of what we start."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from shipyard.telemetry.tracecontext import TraceParent


def traceparent(request: HTTPConnection) -> TraceParent | None:
    return TraceParent.parse(request.headers.get("traceparent"))
