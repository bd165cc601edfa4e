"""Every error leaves as ``{"error": {"code", "message"}}`` with a precise status, no traceback.

A body that is not JSON (or not UTF-8) answers 400 ``malformed_body``; JSON that does not fit the
request's schema answers 422 ``invalid_input`` naming the fields. An error nobody expected
answers 500 ``internal_error`` (the traceback goes to the log) and, unlike Starlette's own
handler, does not re-raise: the client's keep-alive connection stays open.

``responses(...)`` is what the routes declare in the OpenAPI document: every status any route
can answer (``COMMON``) plus the route's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shipyard.api.schemas import ErrorResponse
from shipyard.errors import ShipyardError
from shipyard.stores.storable import servable

log = structlog.get_logger(__name__)

_HTTP_CODES = {
    400: "malformed_body",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


COMMON = (400, 401, 403, 408, 413, 422, 429, 500, 503)
"""What any authenticated route can answer: a request the HTTP parser refuses, no or a bad key,
a missing scope, a request too slow to arrive, a body over the limit, input that fails
validation, a rate limit, an unexpected error, a store that is down."""
_DESCRIPTIONS = {
    400: "Malformed request: the HTTP parser refused it, e.g. a raw control character or "
    "non-ASCII byte in the URL (`malformed_request`; connection closed), or a body that is not "
    "JSON or not UTF-8 (`malformed_body`).",
    401: "Missing, invalid or revoked key (`unauthorized`).",
    402: "A spend budget has no room for the run or its next model call (`budget_exceeded`).",
    403: "The key lacks the scope (`forbidden`).",
    404: "Not found (`not_found`, or the resource's own code).",
    408: "The headers or body did not arrive in time (`request_timeout`); connection closed.",
    409: "Conflict with the resource's state.",
    413: "Body over the size limit (`payload_too_large`).",
    416: "The `Range` starts past the end (`range_not_satisfiable`).",
    422: "Invalid input, naming the fields (`invalid_input`).",
    429: "A rate limit of the tenant or the key (`rate_limited`), or the tenant's cap on runs "
    "in flight (`too_many_runs`); see `Retry-After` and `RateLimit-*`.",
    500: "The run failed (`run_failed`, `max_steps_exceeded`), a store refused the data "
    "(`store_rejected`), or an unexpected error (`internal_error`; details in the server log).",
    502: "The model provider failed (`model_error`).",
    503: "A backing store is unavailable (`store_unavailable`).",
    504: "The run took too long (`run_timeout`).",
}


def responses(*codes: int, body: bool = False) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route for its ``responses=``: ``COMMON``, 400 if it takes a
    ``body``, and ``codes``."""
    every = sorted({*COMMON, *codes, *((400,) if body else ())})
    return {c: {"model": ErrorResponse, "description": _DESCRIPTIONS.get(c, "")} for c in every}


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    # a message may quote what a run produced (a model's error): made servable, as its events are
    return JSONResponse(servable({"error": body}), status_code=status, headers=headers)


@dataclass(frozen=True, slots=True)
class Refusal:
    """What an error answers, whatever the form (the API's JSON, the dashboard's page)."""

    status: int
    code: str
    message: str
    details: Any = None
    headers: dict[str, str] | None = None


def refusal_of(exc: Exception) -> Refusal:
    """The answer to a ``ShipyardError``, a request that fails validation or an HTTP error."""
    if isinstance(exc, ShipyardError):
        body = exc.to_dict()  # a store's error says no more than the operation (StoreError)
        return Refusal(
            exc.status, body["code"], body["message"], body.get("details"), exc.http_headers()
        )
    if isinstance(exc, RequestValidationError):
        return _invalid(exc)
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return Refusal(exc.status_code, code, str(exc.detail))


def _invalid(exc: RequestValidationError) -> Refusal:
    problems = [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "type": e["type"]}
        for e in exc.errors()
    ]
    if any(e["type"] == "json_invalid" for e in exc.errors()):
        return Refusal(400, "malformed_body", "the body is not valid JSON", problems)
    fields = ", ".join(p["field"] for p in problems)
    return Refusal(422, "invalid_input", f"invalid request: {fields}", problems)


async def _to_json(request: Request, exc: Exception) -> JSONResponse:
    found = refusal_of(exc)
    if found.status >= 500:
        log.warning("request failed", path=request.url.path, code=found.code, error=found.message)
    return error_response(found.status, found.code, found.message, found.details, found.headers)


class CatchAll:
    """Answers an unexpected exception with the JSON 500 and returns: Starlette's outermost
    handler would answer too, but then re-raise, and uvicorn closes the connection of an app
    that raised. Once a response has started (a stream), only closing it can tell the client:
    the exception goes on."""

    def __init__(self, app: ASGIApp, answer: Callable[[], Response] | None = None) -> None:
        """``answer``: the 500 to send (the API's JSON one by default; the dashboard's page)."""
        self.app = app
        self.answer = answer or _internal_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            log.exception("unhandled error", path=scope.get("path"))
            if started:
                raise
            await self.answer()(scope, receive, send)


def _internal_error() -> Response:
    return error_response(500, "internal_error", "internal error; see the server log")


HANDLED = (ShipyardError, RequestValidationError, StarletteHTTPException)
"""The errors ``refusal_of`` answers."""


def install(app: FastAPI) -> None:
    """The handlers, and ``CatchAll`` (install before other middleware: it is then the
    innermost, and they see its 500)."""
    for kind in HANDLED:
        app.add_exception_handler(kind, _to_json)
    app.add_middleware(CatchAll)
