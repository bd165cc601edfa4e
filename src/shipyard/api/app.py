"""The FastAPI application over a set of ``Services``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from shipyard._version import __version__
from shipyard.api import errors
from shipyard.api.auth import with_bearer_scheme
from shipyard.api.budget_headers import BudgetHeaders
from shipyard.api.keys import KeyService
from shipyard.api.middleware import Authenticate, BodyLimit, RateLimit, is_api
from shipyard.api.routes import (
    agents,
    artifacts,
    audit,
    budgets,
    health,
    runs,
    session_ws,
    sessions,
    subjects,
    tasks,
    tenants,
    usage,
    webhooks,
    workers,
)
from shipyard.api.routes import traces as traces_routes
from shipyard.api.routes.memories import router as memories_router
from shipyard.api.routes.metrics import MetricsMiddleware
from shipyard.api.routes.metrics import router as metrics_router
from shipyard.runtime.services import Services

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 1024 * 1024


def create_app(
    services: Services,
    keys: KeyService,
    *,
    on_startup: Callable[[], Awaitable[None]] | None = None,
    title: str = "Shipyard",
    max_body_bytes: int = MAX_BODY_BYTES,
    ui: FastAPI | None = None,
) -> FastAPI:
    """``on_startup`` runs inside the server's event loop before the first request.

    Middleware, outermost first (each a plain ASGI callable): errors (Starlette's), metrics,
    authentication, rate limits (when ``services.limiter`` is set), the body's limit
    (``max_body_bytes``); see ``api/middleware``. ``ui``: the dashboard (``api.ui``), mounted
    at ``/ui`` with its own cookie sessions (the API's bearer-key middleware passes it by).
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if on_startup is not None:
            await on_startup()
        await services.start()
        try:  # tasks whose hand-over to the broker was pending when a server stopped
            await services.tasks.resume_handovers()
        except Exception as exc:  # the sweep goes on and tries again: the server starts
            log.warning("cannot resume pending task hand-overs", error=str(exc))
        try:
            yield
        finally:
            await services.close()

    # /docs and /redoc load their scripts from this server (/static-offline-docs), not a CDN
    app = FastAPIOffline(title=title, version=__version__, lifespan=lifespan)
    app.state.services = services
    app.state.keys = keys
    app.state.max_body_bytes = max_body_bytes
    errors.install(app)
    _add_middleware(app, services, keys, max_body_bytes)
    for router in ROUTERS:  # flat: an included router costs every request a match and scope keys
        app.router.routes.extend(router.routes)
    if ui is not None:
        app.mount("/ui", ui)
    _declare_bearer(app)
    return app


ROUTERS = (
    agents.router,
    sessions.router,
    tasks.router,
    health.router,
    metrics_router,
    audit.router,
    artifacts.router,
    memories_router,
    runs.router,
    traces_routes.router,
    tenants.router,
    subjects.router,
    webhooks.router,
    workers.router,
    usage.router,
    budgets.router,
    session_ws.router,
)
"""Every route of the API, in the order the OpenAPI document lists them and a request is
matched against them: the hot routes first (each router a request passes costs it a match)."""


def _add_middleware(
    app: FastAPI, services: Services, keys: KeyService, max_body_bytes: int
) -> None:
    """The API's middleware; ``add_middleware`` puts each outside those added before it."""
    app.add_middleware(
        BodyLimit,
        max_bytes=max_body_bytes,
        tenants=services.tenants,
        artifact_max_bytes=services.artifacts.max_bytes if services.artifacts else None,
    )
    if services.limiter is not None:
        app.add_middleware(RateLimit, limiter=services.limiter)
    if services.governor is not None:
        app.add_middleware(BudgetHeaders, governor=services.governor)
    app.add_middleware(Authenticate, keys=keys, audit=services.audit)
    if services.observability.metrics is not None:
        app.add_middleware(MetricsMiddleware, metrics=services.observability.metrics)


def _declare_bearer(app: FastAPI) -> None:
    """The OpenAPI document declares the bearer scheme on the API's routes (``auth``)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_bearer_scheme(build(), is_api)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
