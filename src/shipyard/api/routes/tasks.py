"""``/v1/tasks``: hand over work, get a receipt at once, read the outcome later."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.responses import StreamingResponse

from shipyard.api.auth import require
from shipyard.api.errors import responses
from shipyard.api.fields import INT32_MAX, Text
from shipyard.api.keys import Principal
from shipyard.api.lean import LeanRoute
from shipyard.api.propagation import traceparent
from shipyard.api.schemas import SubmitTask, TaskAccepted, TaskPage, TaskView
from shipyard.api.served import served
from shipyard.api.sse import format_event
from shipyard.api.state import services
from shipyard.errors import InvalidInput
from shipyard.runtime.task_stream import TaskFrame, task_frames
from shipyard.runtime.tasks import TaskService
from shipyard.stores.records.base import TaskStatus
from shipyard.telemetry.events import Event

router = APIRouter(prefix="/v1/tasks", tags=["tasks"], route_class=LeanRoute)
_ERRORS = responses(404)
Invoker = Annotated[Principal, Depends(require("invoke"))]
Reader = Annotated[Principal, Depends(require("read"))]


def _tasks(request: Request) -> TaskService:
    service: TaskService = services(request).tasks
    return service


@router.post(
    "",
    response_model=TaskAccepted,
    status_code=202,
    responses=responses(404, 409, body=True),
)
async def submit_task(
    body: SubmitTask, request: Request, response: Response, principal: Invoker
) -> TaskAccepted:
    """Queue a task; answers before any agent work starts. With an ``idempotency_key`` already
    used by this tenant, answers the first task (header ``Idempotent-Replayed: true``) if the
    body is the same, else 409 ``idempotency_conflict``."""
    webhook_url = str(body.webhook_url) if body.webhook_url else None
    if webhook_url is not None:  # 422 egress_denied for an internal target
        await services(request).webhooks.check_target(webhook_url, field="webhook_url")
    task, created = await _tasks(request).submit(
        principal.tenant_id,
        agent=body.agent,
        input=body.input,
        metadata=body.metadata,
        session_id=body.session_id,
        webhook_url=webhook_url,
        idempotency_key=body.idempotency_key,
        priority=body.priority,
        deadline=body.deadline,
        trace=traceparent(request),
    )
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    base = f"/v1/tasks/{task.id}"
    return TaskAccepted(
        task_id=task.id,
        status=task.status,
        links={"self": base, "cancel": f"{base}/cancel"},
    )


@router.get("", response_model=TaskPage, responses=responses())
async def list_tasks(
    request: Request,
    principal: Reader,
    status: TaskStatus | None = None,
    agent: Text | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Text | None = None,
) -> TaskPage:
    page = await _tasks(request).listing(
        principal.tenant_id, status=status, agent=agent, limit=limit, cursor=cursor
    )
    return TaskPage(tasks=[TaskView.of(t) for t in page.items], next_cursor=page.next_cursor)


@router.get("/{task_id}", response_model=TaskView, responses=_ERRORS)
async def get_task(task_id: Text, request: Request, principal: Reader) -> TaskView:
    """The task, with every status change and when it happened."""
    service = _tasks(request)
    task = await service.get(principal.tenant_id, task_id)
    view = TaskView.of(task, await service.transitions(principal.tenant_id, task_id))
    return served(view, row=task_id)


@router.get(
    "/{task_id}/events",
    responses={**_ERRORS, 200: {"content": {"text/event-stream": {}}}},
    response_model=None,
)
async def task_events(task_id: Text, request: Request, principal: Reader) -> StreamingResponse:
    """The task's status changes (``event: task.<status>``, ``id:`` the change's position) and,
    after each ``task.running``, the events of the run that attempt started (``event:`` the
    event's type, ``id: <position>.<seq>``), as Server-Sent Events until the task ends.
    Reconnect with ``Last-Event-ID`` to get only what came after."""
    service = _tasks(request)
    await service.get(principal.tenant_id, task_id)  # 404 as HTTP, before the stream
    after = _resume_point(request.headers.get("last-event-id"))
    records = services(request).records
    return StreamingResponse(
        _sse(task_frames(service, records, principal.tenant_id, task_id, after)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _resume_point(last_event_id: str | None) -> tuple[int, int]:
    """``(position, seq)`` of the last frame the client has: ``"3"`` is the third change,
    ``"3.2"`` the second event of the run it started."""
    if not last_event_id:
        return 0, 0
    position, _, seq = last_event_id.partition(".")
    try:
        point = int(position), int(seq or 0)
    except ValueError:
        raise InvalidInput("Last-Event-ID must be <position> or <position>.<seq>") from None
    if min(point) < 0 or max(point) > INT32_MAX:
        raise InvalidInput(f"Last-Event-ID's numbers must be within 0..{INT32_MAX}")
    return point


async def _sse(frames: AsyncIterator[TaskFrame]) -> AsyncIterator[bytes]:
    async for ident, item in frames:
        if isinstance(item, Event):
            yield format_event(item, ident)
        else:
            data = item.model_dump_json()
            yield f"id: {ident}\nevent: task.{item.status}\ndata: {data}\n\n".encode()


@router.post("/{task_id}/cancel", response_model=TaskView, responses=responses(404, 409))
async def cancel_task(task_id: Text, request: Request, principal: Invoker) -> TaskView:
    """A queued task is cancelled at once; a running one is asked to stop (it answers
    ``running``, its last transition records the request; its status turns ``cancelled`` when
    its worker has stopped it); a finished one answers 409. The answer has the transitions."""
    service = _tasks(request)
    task = await service.cancel(principal.tenant_id, task_id)
    return TaskView.of(task, await service.transitions(principal.tenant_id, task_id))
