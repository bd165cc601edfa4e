"""The dashboard as an ASGI app of its own, mounted at ``/ui`` by ``api.app.create_app``.

Server-rendered pages (Jinja2) with htmx for partial reloads and uPlot for charts, every asset
served from the package (``static/``; ``static/vendor/README.md`` says where each came from).
Its own middleware is the signed cookie session (``session``); the API's bearer-key middleware
does not see these paths. Errors answer as pages (``errorpages``: the API's refusals, in
HTML), except a missing session, which redirects to the sign-in page.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from shipyard.api.keys import KeyService
from shipyard.api.ui import actions, costs, errorpages, live, ops, pages, signin
from shipyard.api.ui.costs import ClosedDays
from shipyard.api.ui.session import SignInRequired, login_url
from shipyard.api.ui.throttle import SignInThrottle
from shipyard.runtime.services import Services

HERE = Path(__file__).parent
COOKIE = "shipyard_ui"
SESSION_MAX_AGE_S = 12 * 3600


def create_ui(
    services: Services,
    keys: KeyService,
    *,
    session_key: str | None = None,
    secure_cookie: bool = False,
    audit_key: bytes | None = None,
    signin_failures: tuple[int, float] = (10, 300.0),
) -> FastAPI:
    """``session_key`` signs the session cookies (a random one per process without it: every
    restart signs everyone out). ``secure_cookie``: send the cookie over HTTPS only.
    ``audit_key``: checks the audit log's chains on the audit page (hidden without it).
    ``signin_failures``: failed sign-ins a client address may make per window (seconds)."""
    ui = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    ui.state.services = services
    ui.state.keys = keys
    ui.state.audit_key = audit_key
    ui.state.signin_throttle = SignInThrottle(*signin_failures)
    ui.state.closed_days = ClosedDays()
    errorpages.install(ui)
    ui.add_exception_handler(SignInRequired, _to_sign_in)  # type: ignore[arg-type]
    ui.add_middleware(
        SessionMiddleware,
        secret_key=session_key or secrets.token_hex(32),
        session_cookie=COOKIE,
        max_age=SESSION_MAX_AGE_S,
        path="/ui",
        same_site="strict",
        https_only=secure_cookie,
    )
    ui.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (signin, pages, ops, costs, actions, live):
        ui.include_router(module.router)
    return ui


async def _to_sign_in(request: Request, exc: SignInRequired) -> RedirectResponse:
    if request.headers.get("hx-request"):  # an htmx fragment: the whole page goes to sign-in
        response = RedirectResponse(login_url(exc.next_path), status_code=303)
        response.headers["HX-Redirect"] = login_url(exc.next_path)
        return response
    return RedirectResponse(login_url(exc.next_path), status_code=303)
