"""The run pages: the overview, the runs list, a run's timeline and a trace's waterfall."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.responses import Response

from shipyard.api.fields import Text
from shipyard.api.routes.workers import state_of
from shipyard.api.state import services
from shipyard.api.ui.breakdown import Breakdown, By, breakdown
from shipyard.api.ui.live import live_mark
from shipyard.api.ui.render import page
from shipyard.api.ui.session import CurrentViewer, Viewer
from shipyard.api.ui.stats import BUCKETS, WINDOWS, Overview, overview
from shipyard.api.ui.timeline import steps_of, waterfall
from shipyard.errors import NotFound, RunNotFound
from shipyard.stores.records.base import RecordStore, RunStatus

router = APIRouter()
WindowParam = Annotated[Literal["15m", "1h", "6h", "24h"], Query()]
Limit = Annotated[int, Query(ge=1, le=200)]
Kind = Literal["invoke", "session", "task"]
RUN_WINDOWS = {**WINDOWS, "7d": timedelta(days=7)}
TRACE_ID = "^[0-9a-fA-F]{32}$"
MAX_SEARCH = 200
SEARCH_WINDOW: Literal["24h"] = "24h"
"""A search with no window chosen looks at the last day (the rest: choose 7d)."""
QUEUE_SHOWN = 500
"""The overview counts queued tasks up to this many (one index page, never a count(*))."""


ByParam = Annotated[By, Query()]


@router.get("/", include_in_schema=False)
async def overview_page(
    request: Request, viewer: CurrentViewer, window: WindowParam = "1h", by: ByParam = "agent"
) -> Response:
    records = services(request).records
    mark = await live_mark(records, viewer.tenant_id)  # before reading: nothing slips between
    found = await overview(records, viewer.tenant_id, window)
    split = await _breakdown(records, viewer, by, found)
    workers = await records.list_workers() if viewer.operator else None
    queued = await records.list_tasks(viewer.tenant_id, status="queued", limit=QUEUE_SHOWN)
    return page(
        request,
        "overview.html",
        viewer,
        nav="overview",
        stats=found,
        split=split,
        bys=["agent", "model", "tenant"] if viewer.operator else ["agent", "model"],
        windows=list(WINDOWS),
        workers=workers,
        queued=len(queued.items),
        mark=mark,
        queued_more=queued.next_cursor is not None,
    )


@router.get("/overview.json", include_in_schema=False)
async def overview_data(
    request: Request, viewer: CurrentViewer, window: WindowParam = "1h", by: ByParam = "agent"
) -> Response:
    """The charts' series, fetched by the page's script on load and on each live update."""
    records = services(request).records
    found = await overview(records, viewer.tenant_id, window)
    split = await _breakdown(records, viewer, by, found)
    return JSONResponse({**found.chart(), "by": split.chart()})


async def _breakdown(records: RecordStore, viewer: Viewer, by: By, found: Overview) -> Breakdown:
    """By tenant: every tenant's for the operator, a tenant's own for others (``/v1/usage``)."""
    tenant = None if by == "tenant" and viewer.operator else viewer.tenant_id
    return await breakdown(records, tenant, by, start=found.start, end=found.end, buckets=BUCKETS)


@router.get("/runs", include_in_schema=False)
async def runs_page(
    request: Request,
    viewer: CurrentViewer,
    agent: Text | None = None,
    status: RunStatus | Literal[""] | None = None,
    session_id: Text | None = None,
    task_id: Text | None = None,
    kind: Kind | Literal[""] | None = None,
    within: Annotated[Literal["15m", "1h", "6h", "24h", "7d", ""] | None, Query()] = None,
    q: Annotated[str | None, Query(max_length=MAX_SEARCH)] = None,
    cursor: Text | None = None,
    limit: Limit = 50,
) -> Response:
    """Newest first, one cursor page at a time (no count of the whole table); ``within``: runs
    started in the last 15 minutes ... 7 days; ``q``: text in their input or output, searched
    within ``SEARCH_WINDOW`` unless another window is chosen (a scan of that window's rows)."""
    status, kind, within = status or None, kind or None, within or None  # the form's "any"
    q = (q or "").strip() or None
    if q and not within:
        within = SEARCH_WINDOW
    since = datetime.now(UTC) - RUN_WINDOWS[within] if within else None
    mark = await live_mark(services(request).records, viewer.tenant_id)
    found = await services(request).records.list_runs(
        viewer.tenant_id,
        agent=agent or None,
        status=status,
        session_id=session_id or None,
        task_id=task_id or None,
        kind=kind,
        since=since,
        limit=limit,
        cursor=cursor or None,
        text=q,
    )
    filters = {
        "q": q,
        "agent": agent,
        "status": status,
        "session_id": session_id,
        "task_id": task_id,
        "kind": kind,
        "within": within,
    }
    template = "_runs_rows.html" if request.headers.get("hx-request") else "runs.html"
    return page(
        request,
        template,
        viewer,
        nav="runs",
        runs=found.items,
        next_cursor=found.next_cursor,
        filters=filters,
        agents=sorted(services(request).agents),
        limit=limit,
        first_page=not cursor,
        mark=mark,
    )


@router.get("/runs/{run_id}", include_in_schema=False)
async def run_page(run_id: Text, request: Request, viewer: CurrentViewer) -> Response:
    records = services(request).records
    run = await records.get_run(viewer.tenant_id, run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id!r}")
    events = await records.list_events(viewer.tenant_id, run_id, limit=5000)
    children = await records.list_runs(viewer.tenant_id, parent_run_id=run_id, limit=100)
    template = "_timeline.html" if request.headers.get("hx-request") else "run.html"
    return page(
        request,
        template,
        viewer,
        nav="runs",
        run=run,
        steps=steps_of(events),
        kind=_kind(run),
        children=children.items,
        last_seq=events[-1].seq if events else 0,
    )


def _kind(run: object) -> Kind:
    if getattr(run, "session_id", None):
        return "session"
    return "task" if getattr(run, "task_id", None) else "invoke"


@router.get("/traces", include_in_schema=False)
async def traces_page(
    request: Request,
    viewer: CurrentViewer,
    trace_id: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    """A form for a trace id (a run's page links its trace)."""
    if trace_id:
        if len(trace_id) != 32 or any(c not in "0123456789abcdefABCDEF" for c in trace_id):
            return page(
                request,
                "traces.html",
                viewer,
                nav="traces",
                status=422,
                error="A trace id is 32 hex digits.",
                trace_id=trace_id,
            )
        return RedirectResponse(f"/ui/traces/{trace_id.lower()}", status_code=303)
    return page(request, "traces.html", viewer, nav="traces", trace_id="")


@router.get("/traces/{trace_id}", include_in_schema=False)
async def trace_page(
    request: Request, viewer: CurrentViewer, trace_id: Annotated[str, Path(pattern=TRACE_ID)]
) -> Response:
    from shipyard.telemetry.tracing import spans_of  # the OpenTelemetry SDK: only when asked

    trace_id = trace_id.lower()
    events = await services(request).records.trace_events(viewer.tenant_id, trace_id)
    rows = spans_of(events)
    if not rows:
        raise NotFound(f"no trace {trace_id!r}")
    return page(
        request, "trace.html", viewer, nav="traces", trace_id=trace_id, bars=waterfall(rows)
    )


@router.get("/workers", include_in_schema=False)
async def workers_page(request: Request, viewer: CurrentViewer) -> Response:
    """Workers serve every tenant: the operator's admin keys see them (like ``/v1/workers``)."""
    rows = []
    if viewer.operator:
        now = datetime.now(UTC)
        for worker in await services(request).records.list_workers():
            rows.append((worker, state_of(worker, now)))
    return page(request, "workers.html", viewer, nav="workers", workers=rows)
