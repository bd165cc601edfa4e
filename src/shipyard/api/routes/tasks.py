"""``/v1/tasks``: hand over work, get a receipt at once, read the outcome later."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from shipyard.api.auth import require
from shipyard.api.keys import Principal
from shipyard.api.schemas import ErrorResponse, SubmitTask, TaskAccepted, TaskPage, TaskView
from shipyard.runtime.tasks import TaskService
from shipyard.stores.records.base import TaskStatus

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422, 503)
}
Invoker = Annotated[Principal, Depends(require("invoke"))]
Reader = Annotated[Principal, Depends(require("read"))]


def _tasks(request: Request) -> TaskService:
    service: TaskService = request.app.state.services.tasks
    return service


@router.post("", response_model=TaskAccepted, status_code=202, responses=_ERRORS)
async def submit_task(
    body: SubmitTask, request: Request, response: Response, principal: Invoker
) -> TaskAccepted:
    """Queue a task; answers before any agent work starts. With an ``idempotency_key`` already
    used by this tenant, answers the first task (header ``Idempotent-Replayed: true``)."""
    task, created = await _tasks(request).submit(
        principal.tenant_id,
        agent=body.agent,
        input=body.input,
        metadata=body.metadata,
        session_id=body.session_id,
        webhook_url=str(body.webhook_url) if body.webhook_url else None,
        idempotency_key=body.idempotency_key,
        priority=body.priority,
        deadline=body.deadline,
    )
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    base = f"/v1/tasks/{task.id}"
    return TaskAccepted(
        task_id=task.id,
        status=task.status,
        links={"self": base, "cancel": f"{base}/cancel"},
    )


@router.get("", response_model=TaskPage, responses=_ERRORS)
async def list_tasks(
    request: Request,
    principal: Reader,
    status: TaskStatus | None = None,
    agent: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> TaskPage:
    page = await _tasks(request).listing(
        principal.tenant_id, status=status, agent=agent, limit=limit, cursor=cursor
    )
    return TaskPage(tasks=[TaskView.of(t) for t in page.items], next_cursor=page.next_cursor)


@router.get("/{task_id}", response_model=TaskView, responses=_ERRORS)
async def get_task(task_id: str, request: Request, principal: Reader) -> TaskView:
    """The task, with every status change and when it happened."""
    service = _tasks(request)
    task = await service.get(principal.tenant_id, task_id)
    return TaskView.of(task, await service.transitions(principal.tenant_id, task_id))


@router.post("/{task_id}/cancel", response_model=TaskView, responses=_ERRORS)
async def cancel_task(task_id: str, request: Request, principal: Invoker) -> TaskView:
    """A queued task is cancelled at once; a running one is asked to stop (its status turns
    ``cancelled`` when its worker has stopped it); a finished one answers 409."""
    task = await _tasks(request).cancel(principal.tenant_id, task_id)
    return TaskView.of(task)
