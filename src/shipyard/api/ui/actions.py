"""The dashboard's actions: plain form POSTs, each with the session's CSRF token, each checking
the scope the API's route checks and calling the same runtime code, each audited.

- cancel a task (``invoke``; ``TaskService.cancel``, as ``POST /v1/tasks/{id}/cancel``);
- retry an ended task (``invoke``): a new task with the same agent, input, metadata, session,
  priority and webhook (``TaskService.submit``, as ``POST /v1/tasks``), its metadata naming the
  task it retries (``retry_of``);
- create and revoke keys of the viewed tenant (``admin``; ``KeyService``, as ``shipyard keys``);
- check the audit log's chains (the operator's admin keys; ``runtime.audit_chain.verify``).
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from shipyard.api.fields import Text
from shipyard.api.keys import parse_scopes
from shipyard.api.state import keys as state_keys
from shipyard.api.state import services
from shipyard.api.ui.render import link_maker, page
from shipyard.api.ui.session import ActingViewer, Viewer, require_scope
from shipyard.api.ui.state import audit_key
from shipyard.errors import Forbidden, InvalidInput, NotFound, TaskNotEnded
from shipyard.telemetry.audit import AuditEntry, Outcome

router = APIRouter()
RETRYABLE = frozenset({"dead", "failed", "cancelled"})
MAX_NAME = 200


def _audit(request: Request, viewer: Viewer, action: str, resource: str, outcome: Outcome) -> None:
    log = services(request).audit
    if log is not None:
        log.record(
            AuditEntry(
                action=action,
                resource=resource,
                outcome=outcome,
                tenant_id=viewer.tenant_id,
                key_id=viewer.principal.key_id,
                scope="admin" if action.startswith("ui.keys") else "invoke",
                client=request.client.host if request.client else None,
                detail={"via": "dashboard"},
            )
        )


def _back(viewer: Viewer, path: str) -> Response:
    return RedirectResponse(link_maker(viewer)(path), status_code=303)


@router.post("/tasks/{task_id}/cancel", include_in_schema=False)
async def cancel_task(task_id: Text, request: Request, viewer: ActingViewer) -> Response:
    require_scope(viewer, "invoke")
    await services(request).tasks.cancel(viewer.tenant_id, task_id)
    _audit(request, viewer, "ui.tasks.cancel", task_id, "ok")
    return _back(viewer, f"/ui/tasks/{task_id}")


@router.post("/tasks/{task_id}/retry", include_in_schema=False)
async def retry_task(task_id: Text, request: Request, viewer: ActingViewer) -> Response:
    require_scope(viewer, "invoke")
    svc = services(request)
    old = await svc.tasks.get(viewer.tenant_id, task_id)
    if old.status not in RETRYABLE:
        raise TaskNotEnded(f"task {task_id} is {old.status}: only an ended task is retried")
    if old.webhook_url is not None:
        await svc.webhooks.check_target(old.webhook_url, field="webhook_url")
    new, _ = await svc.tasks.submit(
        viewer.tenant_id,
        agent=old.agent,
        input=old.input,
        metadata={**old.metadata, "retry_of": old.id},
        session_id=old.session_id,
        webhook_url=old.webhook_url,
        priority=old.priority,
    )
    _audit(request, viewer, "ui.tasks.retry", task_id, "ok")
    return _back(viewer, f"/ui/tasks/{new.id}")


@router.post("/keys", include_in_schema=False)
async def create_key(request: Request, viewer: ActingViewer) -> Response:
    """The new key's secret is shown once, on the page this answers (never stored)."""
    require_scope(viewer, "admin")
    form = await request.form()
    name = str(form.get("name") or "")[:MAX_NAME]
    scopes = parse_scopes([str(s) for s in form.getlist("scopes")])
    days = str(form.get("expires_days") or "").strip()
    if days and (not days.isdigit() or not 0 < int(days) <= 3650):
        raise InvalidInput("expires_days must be a whole number of days from 1 to 3650")
    keys = state_keys(request)
    secret, record = await keys.create(
        viewer.tenant_id,
        scopes,
        name=name,
        expires_in=timedelta(days=int(days)) if days else None,
    )
    _audit(request, viewer, "ui.keys.create", record.id, "ok")
    listed = await keys.list(viewer.tenant_id)
    return page(request, "keys.html", viewer, nav="keys", keys=listed, created=(secret, record))


@router.post("/keys/{key_id}/revoke", include_in_schema=False)
async def revoke_key(key_id: Text, request: Request, viewer: ActingViewer) -> Response:
    require_scope(viewer, "admin")
    keys = state_keys(request)
    found = next((k for k in await keys.list(viewer.tenant_id) if k.id == key_id), None)
    if found is None:  # another tenant's key is not found, like every other row
        raise NotFound(f"no key {key_id!r}")
    if found.id == viewer.principal.key_id:
        raise Forbidden("this is the key you are signed in with: sign in with another to revoke it")
    await keys.revoke(key_id)
    _audit(request, viewer, "ui.keys.revoke", key_id, "ok")
    return _back(viewer, "/ui/keys")


@router.post("/audit/verify", include_in_schema=False)
async def verify_audit(request: Request, viewer: ActingViewer) -> Response:
    """Check every chain's hashes and signed heads (the whole log: the operator asks for it)."""
    from shipyard.runtime.audit_chain import verify

    if not viewer.operator:
        raise Forbidden("only the operator's admin keys check the whole audit log")
    key = audit_key(request)
    if key is None:
        raise NotFound("the audit key is not known to this server")
    reports = await verify(services(request).records, key)
    return page(request, "audit_verify.html", viewer, nav="audit", reports=reports)
