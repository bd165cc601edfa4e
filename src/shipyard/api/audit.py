"""What the ``Authenticate`` middleware writes to the audit log for each API request.

One row per request, allowed or refused, made from the ASGI scope alone — the route's template
(``GET /v1/runs/{run_id}``) as the action, the raw path (never the query string: it may carry a
browser's key) as the resource, the status as the outcome, the scope the route checked
(``auth.require`` leaves it in the scope), the client's address, the request id (the caller's
``X-Request-Id`` when it is a plain token, else a new one; echoed on the answer) and the
caller's trace id (``traceparent``). Never a header's value otherwise, nor a body.

A request pays for a tuple (``RequestAudit``) only: the writer makes the row in its batch.
"""

from __future__ import annotations

import itertools
import os
import re
import time

from starlette.types import Scope

from shipyard.api.keys import Principal
from shipyard.telemetry.audit import RequestAudit

SCOPE_USED = "shipyard.scope_used"
"""The ASGI scope key under which ``auth.require`` notes the scope a route checked."""
REQUEST_ID = "shipyard.request_id"
TRACEPARENT = "shipyard.traceparent"
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_ID_PART = os.urandom(4).hex()
_ID_SEQ = itertools.count()


def new_request_id() -> str:
    """``req_``, the millisecond, then this process's random part and a counter: time-ordered
    and unique like ``events.new_id``, without a random draw (a system call) per request."""
    millis = time.time_ns() // 1_000_000
    return f"req_{millis:012x}{_ID_PART}{next(_ID_SEQ) & 0xFFFFFFFF:08x}"


def request_headers(scope: Scope) -> tuple[bytes | None, str]:
    """The ``Authorization`` header and the request id (the caller's ``X-Request-Id`` when it
    is a plain token; a new one otherwise), in one pass over the headers; the request id and
    ``traceparent`` are left in the scope."""
    authorization = found = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = authorization or value
        elif name == b"x-request-id":
            found = value if _REQUEST_ID.fullmatch(value) else None
        elif name == b"traceparent":
            scope[TRACEPARENT] = value
    ident = found.decode() if found else new_request_id()
    scope[REQUEST_ID] = ident
    return authorization, ident


def request_id(scope: Scope) -> str:
    """The request's id (see ``request_headers``)."""
    return request_headers(scope)[1]


def entry(
    scope: Scope,
    principal: Principal | None,
    status: int,
    *,
    key_id: str | None = None,
    at: float | None = None,
) -> RequestAudit:
    """The request's row (``key_id``: a refused key's id, when the key exists; ``at``: when it
    began, if not now)."""
    client = scope.get("client")
    return RequestAudit(
        time.time() if at is None else at,
        scope.get("method", "WEBSOCKET"),
        getattr(scope.get("route"), "path", None),
        scope["path"],
        scope.get("raw_path"),
        status,
        principal.tenant_id if principal else None,
        principal.key_id if principal else key_id,
        scope.get(SCOPE_USED),
        client[0] if client else None,
        scope.get(REQUEST_ID),
        scope.get(TRACEPARENT),
    )
