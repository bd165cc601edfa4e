"""What the ``Authenticate`` middleware writes to the audit log for each API request.

One row per request, allowed or refused, made from the ASGI scope alone — the route's template
(``GET /v1/runs/{run_id}``) as the action, the raw path (never the query string: it may carry a
browser's key) as the resource, the status as the outcome, the scope the route checked
(``auth.require`` leaves it in the scope), the client's address, the request id (the caller's
``X-Request-Id`` when it is a plain token, else a new one; echoed on the answer) and the
caller's trace id (``traceparent``). Never a header's value otherwise, nor a body.
"""

from __future__ import annotations

import re

from starlette.types import Scope

from shipyard.api.keys import Principal
from shipyard.telemetry.audit import AuditEntry, outcome_of
from shipyard.telemetry.events import new_id
from shipyard.telemetry.tracecontext import TraceParent

SCOPE_USED = "shipyard.scope_used"
"""The ASGI scope key under which ``auth.require`` notes the scope a route checked."""
REQUEST_ID = "shipyard.request_id"
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def request_id(scope: Scope) -> str:
    """The caller's ``X-Request-Id`` when it is a plain token; a new one otherwise."""
    found = None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            found = value if _REQUEST_ID.fullmatch(value) else None
        elif name == b"traceparent":
            scope["shipyard.traceparent"] = value
    ident = found.decode() if found else new_id("req")
    scope[REQUEST_ID] = ident
    return ident


def entry(
    scope: Scope, principal: Principal | None, status: int, *, key_id: str | None = None
) -> AuditEntry:
    """The request's row (``key_id``: a refused key's id, when the key exists)."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    raw = scope.get("raw_path") or scope["path"].encode()
    trace = scope.get("shipyard.traceparent")
    parent = TraceParent.parse(trace.decode("latin-1")) if trace else None
    client = scope.get("client")
    method = scope.get("method", "WEBSOCKET")
    return AuditEntry(
        action=f"{method} {template or scope['path']}",
        resource=raw.decode("latin-1"),
        outcome=outcome_of(status),
        tenant_id=principal.tenant_id if principal else None,
        key_id=principal.key_id if principal else key_id,
        status=status,
        scope=scope.get(SCOPE_USED),
        client=client[0] if client else None,
        request_id=scope.get(REQUEST_ID),
        trace_id=parent.trace_id if parent else None,
    )
