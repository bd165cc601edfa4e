"""``LeanRoute`` answers every request exactly as FastAPI's own route does (status, body), and
refuses at build time an endpoint it cannot serve."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import PlainTextResponse, Response

from shipyard.api import errors
from shipyard.api.fields import Text
from shipyard.api.lean import LeanRoute
from shipyard.errors import AuthError


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str = Field(min_length=1)
    count: int = 1
    tags: dict[str, Any] = Field(default_factory=dict)


class Answer(BaseModel):
    name: str
    input: str
    total: int
    caller: str
    note: str | None = None


class Wide(Answer):
    secret: str


async def who(request: Request) -> str:
    """A dependency like ``auth.require``: it takes only the request, and may refuse."""
    caller = request.headers.get("x-caller")
    if caller is None:
        raise AuthError("no caller")
    return caller


def router_with(route_class: type[APIRoute]) -> APIRouter:
    router = APIRouter(prefix="/v1/things", route_class=route_class)

    @router.post("/{name}/do", response_model=Answer, status_code=201)
    async def do(
        name: Text,
        body: Body,
        request: Request,
        response: Response,
        caller: Annotated[str, Depends(who)],
    ) -> Answer | Response:
        response.headers["X-Tag"] = body.input
        if body.input == "plain":
            return PlainTextResponse("as is")
        if body.input == "moved":
            response.status_code = 200
        return Answer(name=name, input=body.input, total=body.count * 2, caller=caller)

    @router.get("/{name}")
    async def show(name: Text, caller: Annotated[str, Depends(who)]) -> Answer:
        return Answer(name=name, input="", total=0, caller=caller)

    @router.get("/{name}/wide", response_model=Answer)
    async def wide(name: Text, caller: Annotated[str, Depends(who)]) -> Wide:
        return Wide(name=name, input="", total=0, caller=caller, secret="never answered")

    @router.get("/{name}/plain")
    async def plain(name: Text) -> dict[str, Any]:
        return {"name": name, "n": [1, 2.5, None]}

    @router.get("/{name}/search")
    async def search(name: Text, q: Annotated[int, Query(ge=1)] = 1) -> dict[str, int]:
        return {"q": q}

    return router


def app_with(route_class: type[APIRoute]) -> FastAPI:
    app = FastAPI()
    errors.install(app)
    app.include_router(router_with(route_class))
    return app


REQUESTS: list[tuple[str, str, dict[str, str], bytes]] = [
    ("POST", "/v1/things/a/do", {"content-type": "application/json"}, b'{"input": "x"}'),
    (
        "POST",
        "/v1/things/a/do",
        {"content-type": "application/json"},
        b'{"input": "x", "count": 4}',
    ),
    ("POST", "/v1/things/a/do", {"content-type": "application/json"}, b'{"input": "plain"}'),
    ("POST", "/v1/things/a/do", {"content-type": "application/json"}, b'{"input": "moved"}'),
    ("POST", "/v1/things/a/do", {"content-type": "application/vnd.x+json"}, b'{"input": "y"}'),
    ("POST", "/v1/things/a/do", {"content-type": "application/json"}, b""),
    ("POST", "/v1/things/a/do", {"content-type": "application/json"}, b"{oops"),
    ("POST", "/v1/things/a/do", {"content-type": "application/json"}, b'{"input": "\xff"}'),
    ("POST", "/v1/things/a/do", {"content-type": "text/plain"}, b'{"input": "x"}'),
    ("POST", "/v1/things/a/do", {}, b'{"input": "x"}'),
    ("POST", "/v1/things/a/do", {"content-type": "application/json"}, b'{"input": ""}'),
    ("POST", "/v1/things/a/do", {"content-type": "application/json"}, b'{"input": 3, "x": 1}'),
    ("POST", "/v1/things/a/do", {"content-type": "application/json"}, b"[1, 2]"),
    ("POST", "/v1/things/a%00b/do", {"content-type": "application/json"}, b'{"input": "x"}'),
    ("POST", "/v1/things/a%00b/do", {"content-type": "application/json"}, b'{"input": ""}'),
    ("GET", "/v1/things/a", {}, b""),
    ("GET", "/v1/things/a%00", {}, b""),
    ("GET", "/v1/things/a/wide", {}, b""),
    ("GET", "/v1/things/a/plain", {}, b""),
    ("GET", "/v1/things/a/search?q=3", {}, b""),
    ("GET", "/v1/things/a/search?q=0", {}, b""),
]


@pytest.mark.parametrize(("method", "path", "headers", "body"), REQUESTS)
async def test_a_lean_route_answers_as_fastapis_own(
    method: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    answers = []
    for route_class in (APIRoute, LeanRoute):
        transport = httpx.ASGITransport(app=app_with(route_class))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for caller in ({"x-caller": "k1"}, {}):
                reply = await client.request(
                    method, path, headers={**headers, **caller}, content=body
                )
                answers.append(
                    (
                        reply.headers.get("x-tag"),
                        reply.status_code,
                        reply.headers["content-type"],
                        reply.json() if "json" in reply.headers["content-type"] else reply.text,
                    )
                )
    fastapi_answers, lean_answers = answers[:2], answers[2:]
    assert lean_answers == fastapi_answers
    assert "never answered" not in str(lean_answers)


def test_an_endpoint_a_lean_route_cannot_serve_keeps_fastapis_handler() -> None:
    routes = {
        route.name: route for route in router_with(LeanRoute).routes if isinstance(route, APIRoute)
    }
    handlers = {name: route.get_route_handler().__qualname__ for name, route in routes.items()}
    assert handlers["do"].startswith("lean_handler")
    assert handlers["wide"].startswith("lean_handler")
    assert not handlers["search"].startswith("lean_handler")  # a query parameter
