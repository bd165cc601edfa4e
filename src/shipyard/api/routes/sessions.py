"""``/v1/sessions``: conversations that keep their history between turns."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from shipyard.agents.context import RunRequest
from shipyard.api.auth import require
from shipyard.api.errors import responses
from shipyard.api.fields import Text
from shipyard.api.keys import Principal
from shipyard.api.lean import LeanRoute
from shipyard.api.propagation import traceparent
from shipyard.api.schemas import (
    CreateSession,
    InvokeResponse,
    SessionDetail,
    SessionInfo,
    SessionPage,
    TurnRequest,
)
from shipyard.api.served import served
from shipyard.api.sse import stream_run
from shipyard.api.state import services
from shipyard.runtime.invoke import RunOutcome
from shipyard.runtime.sessions import SessionService
from shipyard.telemetry.events import Sink

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], route_class=LeanRoute)
_ERRORS = responses(404)
Invoker = Annotated[Principal, Depends(require("invoke"))]
Reader = Annotated[Principal, Depends(require("read"))]


def _sessions(request: Request) -> SessionService:
    service: SessionService = services(request).sessions
    return service


@router.post("", response_model=SessionInfo, status_code=201, responses=responses(404, body=True))
async def create_session(body: CreateSession, request: Request, principal: Invoker) -> SessionInfo:
    record = await _sessions(request).create(
        principal.tenant_id,
        body.agent,
        metadata=body.metadata,
        ttl_s=body.ttl_seconds,
        on_busy=body.on_busy,
    )
    return SessionInfo.of(record)


@router.get("", response_model=SessionPage, responses=responses())
async def list_sessions(
    request: Request,
    principal: Reader,
    agent: Text | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Text | None = None,
) -> SessionPage:
    """The tenant's sessions (expired ones included, deleted ones not), newest first."""
    page = await _sessions(request).listing(
        principal.tenant_id, agent=agent, limit=limit, cursor=cursor
    )
    return SessionPage(
        sessions=[SessionInfo.of(s) for s in page.items], next_cursor=page.next_cursor
    )


@router.get("/{session_id}", response_model=SessionDetail, responses=_ERRORS)
async def get_session(session_id: Text, request: Request, principal: Reader) -> SessionDetail:
    view = await _sessions(request).get(principal.tenant_id, session_id)
    detail = SessionDetail(
        **SessionInfo.of(view.record).model_dump(),
        on_busy=view.on_busy,
        turns=view.turns,
        history=view.history,
    )
    return served(detail, row=session_id)


@router.delete("/{session_id}", status_code=204, responses=_ERRORS)
async def delete_session(session_id: Text, request: Request, principal: Invoker) -> Response:
    await _sessions(request).delete(principal.tenant_id, session_id)
    return Response(status_code=204)


@router.post(
    "/{session_id}/turns",
    response_model=InvokeResponse,
    responses={
        **responses(402, 404, 409, 502, 504, body=True),
        200: {"content": {"text/event-stream": {}}},
    },
)
async def turn(
    session_id: Text, body: TurnRequest, request: Request, principal: Invoker
) -> InvokeResponse | Response:
    """One turn: answers like invoke (JSON, or SSE with ``Accept: text/event-stream``)."""
    sessions = _sessions(request)
    run = RunRequest.turn(principal.tenant_id, session_id, body.input, parent=traceparent(request))
    if "text/event-stream" in request.headers.get("accept", ""):
        await sessions.check(principal.tenant_id, session_id)  # 404s as HTTP, not in-stream

        def start(sink: Sink) -> Coroutine[Any, Any, RunOutcome]:
            return sessions.turn(run, sinks=[sink], stream_deltas=True)

        return stream_run(start)
    outcome = await sessions.turn(run)
    return InvokeResponse.of(outcome, session_id=session_id)
