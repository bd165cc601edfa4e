"""Bearer-key authentication and scope checks, shared by the HTTP routes and the WebSockets.

An HTTP request is authenticated once, by the ``Authenticate`` middleware (``api/middleware``),
before its body is read; the routes' dependencies check the principal it left in the scope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request

from shipyard.api.audit import SCOPE_USED
from shipyard.api.keys import KeyService, Principal
from shipyard.api.state import keys
from shipyard.errors import AuthError
from shipyard.stores.records.base import Scope


def bearer_secret(header: str | None) -> str:
    """The key in an ``Authorization: Bearer <key>`` header."""
    if not header:
        raise AuthError("missing Authorization: Bearer <key> header")
    kind, _, secret = header.partition(" ")
    if kind.lower() != "bearer" or not secret.strip():
        raise AuthError("the Authorization header must be 'Bearer <key>'")
    return secret.strip()


async def authenticate(keys: KeyService, secret: str, scope: Scope) -> Principal:
    """The one check behind every route: a live key that has ``scope``."""
    principal = await keys.verify(secret)
    principal.require(scope)
    return principal


BEARER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "An API key (`shipyard keys create`), sent as `Authorization: Bearer <key>`.",
}
"""The bearer scheme the OpenAPI document declares for the API's routes (the Authorize button
of ``/docs``; ``with_bearer_scheme``). The check itself is the ``Authenticate`` middleware's:
a FastAPI security dependency would cost every request a dependency call for a document."""


def with_bearer_scheme(schema: dict[str, Any], is_api: Callable[[str], bool]) -> dict[str, Any]:
    """``schema`` (an OpenAPI document) with the bearer scheme on every operation of a path
    that ``is_api``."""
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = dict(
        BEARER_SCHEME
    )
    for path, operations in schema.get("paths", {}).items():
        if is_api(path):
            for operation in operations.values():
                operation["security"] = [{"bearer": []}]
    return schema


PRINCIPAL = "shipyard.principal"
"""The ASGI scope key under which the ``Authenticate`` middleware leaves the caller."""


async def caller(request: Request) -> Principal:
    """The caller the middleware authenticated (or, outside it, the request's bearer key)."""
    found = request.scope.get(PRINCIPAL)
    if isinstance(found, Principal):
        return found
    secret = bearer_secret(request.headers.get("authorization"))
    principal: Principal = await keys(request).verify(secret)
    return principal


def require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates the caller and checks ``scope``."""

    async def dependency(request: Request) -> Principal:
        request.scope[SCOPE_USED] = scope  # for the request's audit row
        principal = await caller(request)
        principal.require(scope)
        return principal

    return dependency


async def require_operator(request: Request) -> Principal:
    """A dependency for what spans tenants (the workers, every tenant's metrics): an admin key
    of the operator's tenant (``SHIPYARD_OPERATOR_TENANT``)."""
    request.scope[SCOPE_USED] = "admin"
    principal = await caller(request)
    principal.require_operator()
    return principal
