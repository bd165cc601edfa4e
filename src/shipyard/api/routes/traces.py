"""``/v1/traces``: a trace's spans, built by telemetry (``tracing.spans_of``) from its runs'
stored events (``RecordStore.trace_events``).

Only the caller's tenant's spans: a trace that crossed tenants shows each tenant its own part,
and a trace with none of the caller's spans is not found.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from shipyard.api.auth import require
from shipyard.api.errors import responses
from shipyard.api.keys import Principal
from shipyard.api.state import services
from shipyard.errors import NotFound
from shipyard.telemetry.spans import SpanRow

router = APIRouter(prefix="/v1/traces", tags=["traces"])
_ERRORS = responses(404)
Reader = Annotated[Principal, Depends(require("read"))]
TraceId = Annotated[
    str, Path(pattern="^[0-9a-fA-F]{32}$", description="32 hex digits (W3C trace id)")
]


class SpanView(BaseModel):
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    service: str
    start_time: datetime
    end_time: datetime
    duration_ms: float
    status: str = Field(description="unset, ok or error")
    status_message: str | None = None
    attributes: dict[str, Any]
    events: list[dict[str, Any]] = Field(default_factory=list)

    @classmethod
    def of(cls, row: SpanRow) -> SpanView:
        return cls(
            trace_id=row["trace_id"],
            span_id=row["span_id"],
            parent_span_id=row["parent_span_id"],
            name=row["name"],
            kind=row["kind"],
            service=row["service"],
            start_time=_time(row["start_ns"]),
            end_time=_time(row["end_ns"]),
            duration_ms=round((row["end_ns"] - row["start_ns"]) / 1e6, 3),
            status=row["status"],
            status_message=row["status_message"],
            attributes=row["attributes"],
            events=row["events"],
        )


class TraceView(BaseModel):
    trace_id: str
    spans: list[SpanView] = Field(description="By start time")


@router.get("/{trace_id}", response_model=TraceView, responses=_ERRORS)
async def get_trace(trace_id: TraceId, request: Request, principal: Reader) -> TraceView:
    """The spans of the trace that belong to the caller's tenant (runs, model and tool calls)."""
    from shipyard.telemetry.tracing import spans_of  # the OpenTelemetry SDK: only when asked

    trace_id = trace_id.lower()
    events = await services(request).records.trace_events(principal.tenant_id, trace_id)
    rows = spans_of(events)
    if not rows:
        raise NotFound(f"no trace {trace_id!r}")
    return TraceView(trace_id=trace_id, spans=[SpanView.of(r) for r in rows])


def _time(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)
