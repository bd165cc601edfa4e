"""A lean request handler for the hot routes (stateless invoke, session turns, task submission).

FastAPI's own handler spends a large share of a recorded run's CPU around the endpoint: telemetry
hooks, the content type parsed as an e-mail header, dependency solving with its caches and exit
stacks, and the answer validated against its response model again before it is encoded.
:class:`LeanRoute` keeps everything FastAPI derives from the endpoint (the OpenAPI document, the
parameter fields and their validation, the error format) and handles a request in a few steps:
the dependencies (each takes only the ``Request``: ``auth.require``), the path parameters, the
JSON body (``json.loads``, then the body field's own validation, as FastAPI does), the endpoint,
and a model answer encoded once with ``model_dump_json``. Errors are FastAPI's
``RequestValidationError`` with FastAPI's locations, so the API's error handlers answer as on
every other route. An endpoint this cannot serve (query, header or cookie parameters, a
dependency with parameters of its own, background tasks...) is refused when the route is built.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a request to the endpoint needs, worked out once from FastAPI's ``Dependant``."""

    endpoint: Callable[..., Awaitable[Any]]
    dependencies: tuple[tuple[str, Callable[[Request], Awaitable[Any]]], ...]
    path: tuple[Any, ...]  # FastAPI's ModelFields of the path parameters
    body: Any  # the body's ModelField, or None
    body_name: str | None
    request_name: str | None
    status: int


class LeanRoute(APIRoute):
    """An ``APIRoute`` whose handler is :func:`lean_handler` (``APIRouter(route_class=...)``)."""

    def get_route_handler(self) -> Handler:
        return lean_handler(_plan(self))


def _plan(route: APIRoute) -> _Plan:
    dependant = route.dependant
    _refuse_unsupported(route.path, dependant)
    dependencies = []
    for sub in dependant.dependencies:
        _refuse_unsupported(route.path, sub, nested=True)
        if sub.name is None or sub.call is None or sub.request_param_name is None:
            raise TypeError(f"{route.path}: a lean route's dependency takes only the Request")
        dependencies.append((sub.name, sub.call))
    body = route.body_field
    assert dependant.call is not None
    return _Plan(
        endpoint=dependant.call,
        dependencies=tuple(dependencies),
        path=tuple(dependant.path_params),
        body=body,
        body_name=dependant.body_params[0].name if body is not None else None,
        request_name=dependant.request_param_name,
        status=route.status_code or 200,
    )


def _refuse_unsupported(path: str, dependant: Dependant, *, nested: bool = False) -> None:
    unsupported: list[object] = [
        dependant.query_params,
        dependant.header_params,
        dependant.cookie_params,
        dependant.background_tasks_param_name,
        dependant.response_param_name,
        dependant.security_scopes_param_name,
        dependant.websocket_param_name,
        dependant.http_connection_param_name,
        len(dependant.body_params) > 1,
    ]
    if nested:
        unsupported += [dependant.dependencies, dependant.path_params, dependant.body_params]
    if any(unsupported):
        raise TypeError(f"{path}: the endpoint has parameters a lean route does not handle")


def lean_handler(plan: _Plan) -> Handler:
    """The route's handler: dependencies, path, body, endpoint, answer."""

    async def handler(request: Request) -> Response:
        body = await _body(request) if plan.body is not None else None  # first, as FastAPI
        values: dict[str, Any] = {}
        for name, call in plan.dependencies:
            values[name] = await call(request)
        errors: list[Any] = []
        params = request.scope["path_params"]
        for field in plan.path:
            value, found = field.validate(params.get(field.alias), {}, loc=("path", field.alias))
            values[field.name] = value
            errors += found
        if plan.body is not None:
            if body is _MISSING:
                errors.append(_missing(("body",)))
            else:
                values[plan.body_name], found = plan.body.validate(body, {}, loc=("body",))  # type: ignore[index]
                errors += found
        if errors:
            raise RequestValidationError(errors)
        if plan.request_name is not None:
            values[plan.request_name] = request
        answer = await plan.endpoint(**values)
        if isinstance(answer, Response):
            return answer
        return _json(answer, plan.status)

    return handler


_MISSING = object()


async def _body(request: Request) -> Any:
    """The body as FastAPI reads it: JSON when it says so (``application/json``, ``+json``),
    else the raw bytes (which a model then refuses); empty: ``_MISSING``. As in FastAPI, a body
    that cannot be read or decoded is a 400."""
    try:
        body = await request.body()
        if not body:
            return _MISSING
        return json.loads(body) if _is_json(request.headers.get("content-type")) else body
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
            ],
            body=exc.doc,
        ) from exc
    except HTTPException:
        raise
    except Exception as exc:  # undecodable bytes, a body cut off (BodyLimit answers for it)
        raise HTTPException(status_code=400, detail="There was an error parsing the body") from exc


def _missing(loc: tuple[str, ...]) -> Any:
    """FastAPI's error for a required field that is absent."""
    error = ValidationError.from_exception_data(
        "Field required", [{"type": "missing", "loc": loc, "input": {}}]
    ).errors(include_url=False)[0]
    return {**error, "input": None}


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    kind = content_type.partition(";")[0].strip().lower()
    main, _, sub = kind.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def _json(answer: Any, status: int) -> Response:
    if isinstance(answer, BaseModel):
        body = answer.model_dump_json(by_alias=True).encode()
    else:
        body = json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json")
