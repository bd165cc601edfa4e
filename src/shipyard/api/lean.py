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
every other route. An endpoint it cannot serve (query, header or cookie parameters, a
dependency with parameters of its own, background tasks, response model options, another
response class) keeps FastAPI's handler, so a whole router can use it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

from fastapi import HTTPException, Request
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.models import Dependant
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError, ResponseValidationError
from fastapi.responses import JSONResponse
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
    response_name: str | None  # a ``Response`` parameter: its headers and status join the answer
    status: int
    response: Any  # the response model's ModelField, or None
    response_type: type | None  # the model class an answer is encoded as is when it is one


class LeanRoute(APIRoute):
    """An ``APIRoute`` whose handler is :func:`lean_handler` where the endpoint allows it (see
    the module), FastAPI's own elsewhere (``APIRouter(route_class=LeanRoute)``)."""

    def get_route_handler(self) -> Handler:
        plan = _plan(self)
        return super().get_route_handler() if plan is None else lean_handler(plan)


def _plan(route: APIRoute) -> _Plan | None:
    """The plan, or None when the endpoint needs more than a lean handler does."""
    dependant = route.dependant
    if not _simple(route) or not _servable(dependant):
        return None
    dependencies = []
    for sub in dependant.dependencies:
        if not _servable(sub, nested=True) or sub.name is None or sub.call is None:
            return None
        dependencies.append((sub.name, sub.call))
    body = route.body_field
    assert dependant.call is not None
    field = route.response_field
    model = field.field_info.annotation if field is not None else None
    return _Plan(
        endpoint=dependant.call,
        dependencies=tuple(dependencies),
        path=tuple(dependant.path_params),
        body=body,
        body_name=dependant.body_params[0].name if body is not None else None,
        request_name=dependant.request_param_name,
        response_name=dependant.response_param_name,
        status=route.status_code or 200,
        response=route.response_field,
        response_type=model if isinstance(model, type) and issubclass(model, BaseModel) else None,
    )


def _simple(route: APIRoute) -> bool:
    """Answered as JSON, the response model applied with FastAPI's defaults."""
    options = (
        route.response_model_include,
        route.response_model_exclude,
        route.response_model_exclude_unset,
        route.response_model_exclude_defaults,
        route.response_model_exclude_none,
        not route.response_model_by_alias,
    )
    response_class = route.response_class
    if isinstance(response_class, DefaultPlaceholder):
        response_class = response_class.value
    bodyless = route.status_code in (204, 304)  # FastAPI empties a model answer's body
    return not any(options) and response_class is JSONResponse and not bodyless


def _servable(dependant: Dependant, *, nested: bool = False) -> bool:
    unsupported: list[object] = [
        dependant.query_params,
        dependant.header_params,
        dependant.cookie_params,
        dependant.background_tasks_param_name,
        dependant.security_scopes_param_name,
        dependant.websocket_param_name,
        dependant.http_connection_param_name,
        len(dependant.body_params) > 1,
    ]
    if nested:
        unsupported += [
            dependant.response_param_name,
            dependant.dependencies,
            dependant.path_params,
            dependant.body_params,
            dependant.request_param_name is None,
        ]
    return not any(unsupported)


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
        extra = _sub_response(values, plan.response_name)
        answer = await plan.endpoint(**values)
        if isinstance(answer, Response):
            return answer
        if extra is None:
            return _json(answer, plan, plan.status)
        response = _json(answer, plan, extra.status_code or plan.status)
        response.headers.raw.extend(extra.headers.raw)
        return response

    return handler


def _sub_response(values: dict[str, Any], name: str | None) -> Response | None:
    """The ``Response`` FastAPI hands an endpoint that asks for one (no status, no headers)."""
    if name is None:
        return None
    response = Response()
    del response.headers["content-length"]
    response.status_code = None  # type: ignore[assignment]
    values[name] = response
    return response


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


def _json(answer: Any, plan: _Plan, status: int) -> Response:
    """The answer as FastAPI encodes it: through the response model (an instance of exactly
    that model as it is, anything else validated against it first)."""
    if plan.response_type is not None and type(answer) is plan.response_type:
        body = cast(BaseModel, answer).model_dump_json(by_alias=True).encode()
    elif plan.response is not None:
        value, errors = plan.response.validate(answer, {}, loc=("response",))
        if errors:
            raise ResponseValidationError(errors, body=answer)
        body = plan.response.serialize_json(value)
    else:
        return JSONResponse(jsonable_encoder(answer), status_code=status)
    return Response(body, status_code=status, media_type="application/json")
