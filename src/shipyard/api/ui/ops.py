"""The operations pages: sessions, tasks, audit and keys."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime
from starlette.responses import Response

from shipyard.api.fields import Text
from shipyard.api.state import keys as state_keys
from shipyard.api.state import services
from shipyard.api.ui.render import page
from shipyard.api.ui.session import CurrentViewer, require_scope
from shipyard.api.ui.state import audit_key
from shipyard.errors import NotFound, ShipyardError
from shipyard.stores.records.audit_base import AuditQuery
from shipyard.stores.records.base import TaskStatus
from shipyard.telemetry.audit import Outcome

router = APIRouter()
Limit = Annotated[int, Query(ge=1, le=200)]


@router.get("/sessions", include_in_schema=False)
async def sessions_page(
    request: Request,
    viewer: CurrentViewer,
    agent: Text | None = None,
    cursor: Text | None = None,
    limit: Limit = 50,
) -> Response:
    found = await services(request).sessions.listing(
        viewer.tenant_id, agent=agent or None, limit=limit, cursor=cursor or None
    )
    return page(
        request,
        "sessions.html",
        viewer,
        nav="sessions",
        sessions=found.items,
        next_cursor=found.next_cursor,
        agent=agent or "",
    )


@router.get("/sessions/{session_id}", include_in_schema=False)
async def session_page(session_id: Text, request: Request, viewer: CurrentViewer) -> Response:
    """The session and, while it lives, its history; its turns are its runs."""
    svc = services(request)
    record = await svc.records.get_session(viewer.tenant_id, session_id)
    if record is None:
        raise NotFound(f"no session {session_id!r}")
    history, turns, gone = None, None, None
    try:
        view = await svc.sessions.get(viewer.tenant_id, session_id)
        history, turns = view.history, view.turns
    except ShipyardError as exc:  # deleted or expired: the record stays, the history does not
        gone = exc.message
    runs = await svc.records.list_runs(viewer.tenant_id, session_id=session_id, limit=50)
    return page(
        request,
        "session.html",
        viewer,
        nav="sessions",
        session=record,
        history=history,
        turns=turns,
        gone=gone,
        runs=runs.items,
    )


@router.get("/tasks", include_in_schema=False)
async def tasks_page(
    request: Request,
    viewer: CurrentViewer,
    status: TaskStatus | Literal[""] | None = None,
    agent: Text | None = None,
    cursor: Text | None = None,
    limit: Limit = 50,
) -> Response:
    status = status or None  # the filter form's "any"
    found = await services(request).tasks.listing(
        viewer.tenant_id, status=status, agent=agent or None, limit=limit, cursor=cursor or None
    )
    return page(
        request,
        "tasks.html",
        viewer,
        nav="tasks",
        tasks=found.items,
        next_cursor=found.next_cursor,
        filters={"status": status, "agent": agent},
        statuses=["queued", "running", "succeeded", "failed", "cancelled", "dead"],
    )


@router.get("/tasks/{task_id}", include_in_schema=False)
async def task_page(task_id: Text, request: Request, viewer: CurrentViewer) -> Response:
    tasks = services(request).tasks
    task = await tasks.get(viewer.tenant_id, task_id)
    moves = await tasks.transitions(viewer.tenant_id, task_id)
    return page(request, "task.html", viewer, nav="tasks", task=task, moves=moves)


@router.get("/audit", include_in_schema=False)
async def audit_page(
    request: Request,
    viewer: CurrentViewer,
    action: Text | None = None,
    key: Text | None = None,
    outcome: Outcome | Literal[""] | None = None,
    since: AwareDatetime | None = None,
    cursor: Text | None = None,
    limit: Limit = 50,
) -> Response:
    """Admin keys, like ``GET /v1/audit``: a tenant's admin its tenant's rows, the operator any."""
    require_scope(viewer, "admin")
    outcome = outcome or None  # the filter form's "any"
    query = AuditQuery(
        tenant_id=viewer.tenant_id,
        key_id=key or None,
        action=action or None,
        outcomes=(outcome,) if outcome else (),
        since=since,
    )
    found = await services(request).records.list_audit(query, limit=limit, cursor=cursor or None)
    return page(
        request,
        "audit.html",
        viewer,
        nav="audit",
        entries=found.items,
        next_cursor=found.next_cursor,
        filters={"action": action, "key": key, "outcome": outcome},
        can_verify=viewer.operator and audit_key(request) is not None,
    )


@router.get("/keys", include_in_schema=False)
async def keys_page(request: Request, viewer: CurrentViewer) -> Response:
    require_scope(viewer, "admin")
    listed = await state_keys(request).list(viewer.tenant_id)
    return page(request, "keys.html", viewer, nav="keys", keys=listed, created=None)
