"""The dashboard's errors as pages: 404, 403, 422, 429, 500 ... answer HTML under ``/ui``.

The same refusals as the API's (``api.errors.refusal_of``: status, code, message), rendered
by ``error.html`` instead of JSON, so a browser shows a page with a way back, not a JSON body.
An error nobody expected is the 500 page (its traceback goes to the log, as the API's does).
The API under ``/v1`` keeps its JSON errors.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import HTMLResponse, Response

from shipyard.api.errors import HANDLED, CatchAll, refusal_of
from shipyard.api.ui.render import TEMPLATES

TITLES = {
    400: "Bad request",
    401: "Not signed in",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed here",
    409: "Conflict",
    422: "Not a valid request",
    429: "Too many attempts",
    500: "Something went wrong",
    503: "A store is unavailable",
}


def error_page(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """The page of one error (no viewer: it needs no session, so it shows even without one)."""
    title = TITLES.get(status, "Error" if status < 500 else TITLES[500])
    html = TEMPLATES.get_template("error.html").render(
        status=status, code=code, message=message, title=title, viewer=None
    )
    return HTMLResponse(html, status_code=status, headers=headers)


async def _as_page(request: Request, exc: Exception) -> Response:
    found = refusal_of(exc)
    headers = {k: v for k, v in (found.headers or {}).items() if k != "WWW-Authenticate"}
    return error_page(found.status, found.code, found.message, headers or None)


def _internal() -> Response:
    return error_page(500, "internal_error", "An error nobody expected; see the server log.")


def install(ui: FastAPI) -> None:
    """The handlers and the catch-all (first: the innermost middleware, as the API's)."""
    for kind in HANDLED:
        ui.add_exception_handler(kind, _as_page)
    ui.add_middleware(CatchAll, answer=_internal)
