"""``GET /metrics`` (Prometheus text format, scope ``read``) and the ASGI middleware that
measures the HTTP surface.

The operator's admin key sees every series; any other key with ``read`` (a tenant's admin key
included) sees the process-wide series and its own tenant's (the token and cost counters are
per tenant).
With ``SHIPYARD_METRICS_PORT`` the same exposition is also served without auth on that port.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shipyard.api.auth import require
from shipyard.api.errors import responses
from shipyard.api.keys import Principal
from shipyard.api.state import services
from shipyard.errors import NotFound
from shipyard.telemetry.metrics import CONTENT_TYPE, Metrics

router = APIRouter(tags=["metrics"])
UNMATCHED = "unmatched"
"""The route label of a request no route matched (never its raw path)."""


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format."},
        **responses(404),
    },
)
async def metrics(
    request: Request, principal: Annotated[Principal, Depends(require("read"))]
) -> Response:
    """This process's metrics (404 ``not_found`` when ``SHIPYARD_METRICS`` is off)."""
    found: Metrics | None = services(request).observability.metrics
    if found is None:
        raise NotFound("metrics are off in this process (SHIPYARD_METRICS=false)")
    tenant = None if principal.operator else principal.tenant_id
    return Response(found.render(tenant), media_type=CONTENT_TYPE)


def route_of(scope: Scope) -> str:
    """The matched route's template (``/v1/agents/{agent}/invoke``), else ``UNMATCHED``."""
    route = scope.get("route")
    if route is None:
        return UNMATCHED
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(template) if template else UNMATCHED


class MetricsMiddleware:
    """Times every HTTP request until its response's last byte (a stream's too), by method,
    route template and status; counts open WebSocket connections (from their accept)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500  # what the error middleware outside answers if the app raises first
        ended = 0.0

        async def sending(message: Message) -> None:
            nonlocal status, ended
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
            await send(message)
            if kind == "http.response.body" and not message.get("more_body", False):
                ended = time.perf_counter()

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = (ended or time.perf_counter()) - started
            self.metrics.http_request(scope["method"], route_of(scope), status, seconds)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        accepted = False
        metrics = self.metrics

        async def sending(message: Message) -> None:
            nonlocal accepted
            await send(message)
            if message["type"] == "websocket.accept" and not accepted:
                accepted = True
                metrics.websocket_opened()

        try:
            await self.app(scope, receive, sending)
        finally:
            if accepted:
                metrics.websocket_closed()
