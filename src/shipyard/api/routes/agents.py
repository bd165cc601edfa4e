"""``/v1/agents``: what is served, and stateless invocation (JSON or SSE)."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from shipyard.agents.context import RunRequest
from shipyard.api.auth import require
from shipyard.api.errors import responses
from shipyard.api.fields import Text
from shipyard.api.keys import Principal
from shipyard.api.lean import LeanRoute
from shipyard.api.propagation import traceparent
from shipyard.api.schemas import AgentInfo, AgentList, InvokeRequest, InvokeResponse
from shipyard.api.sse import stream_run
from shipyard.api.state import services
from shipyard.runtime.invoke import Invoker, RunOutcome
from shipyard.telemetry.events import Sink

router = APIRouter(prefix="/v1/agents", tags=["agents"], route_class=LeanRoute)


@router.get("", response_model=AgentList, responses=responses())
async def list_agents(
    request: Request, _: Annotated[Principal, Depends(require("read"))]
) -> AgentList:
    return AgentList(
        agents=[
            AgentInfo(name=a.name, description=a.description, tools=list(a.tool_specs))
            for a in services(request).agents.values()
        ]
    )


@router.post(
    "/{agent}/invoke",
    response_model=InvokeResponse,
    responses={
        **responses(402, 404, 502, 504, body=True),
        200: {"content": {"text/event-stream": {}}},
    },
)
async def invoke(
    agent: Text,
    body: InvokeRequest,
    request: Request,
    principal: Annotated[Principal, Depends(require("invoke"))],
) -> InvokeResponse | Response:
    """Run the agent once. With ``Accept: text/event-stream`` the run streams its events."""
    invoker: Invoker = services(request).invoker
    invoker.agent(agent)  # 404 before anything starts
    run = RunRequest(
        tenant_id=principal.tenant_id,
        agent=agent,
        input=body.input,
        metadata=body.metadata,
        parent=traceparent(request),
    )
    if "text/event-stream" in request.headers.get("accept", ""):

        def start(sink: Sink) -> Coroutine[Any, Any, RunOutcome]:
            return invoker.invoke(run, sinks=[sink], stream_deltas=True)

        return stream_run(start)
    outcome = await invoker.invoke(run)
    return InvokeResponse.of(outcome)
