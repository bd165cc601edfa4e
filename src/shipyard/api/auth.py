"""Bearer-key authentication and scope checks, shared by the HTTP routes and the WebSockets.

An HTTP request is authenticated once, by the ``Authenticate`` middleware (``api/middleware``),
before its body is read; the routes' dependencies check the principal it left in the scope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shipyard.api.keys import KeyService, Principal
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


BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="An API key (`shipyard keys create`), sent as `Authorization: Bearer <key>`.",
)
"""Declares the bearer scheme in the OpenAPI document (the Authorize button of ``/docs``); the
check itself is ``bearer_secret``'s, for its precise 401s."""
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]

PRINCIPAL = "shipyard.principal"
"""The ASGI scope key under which the ``Authenticate`` middleware leaves the caller."""


async def caller(request: Request) -> Principal:
    """The caller the middleware authenticated (or, outside it, the request's bearer key)."""
    found = request.scope.get(PRINCIPAL)
    if isinstance(found, Principal):
        return found
    secret = bearer_secret(request.headers.get("authorization"))
    principal: Principal = await request.app.state.keys.verify(secret)
    return principal


def require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates the caller and checks ``scope``."""

    async def dependency(request: Request, _: Credentials) -> Principal:
        principal = await caller(request)
        principal.require(scope)
        return principal

    return dependency


async def require_operator(request: Request, _: Credentials) -> Principal:
    """A dependency for what spans tenants (the workers, every tenant's metrics): an admin key
    of the operator's tenant (``SHIPYARD_OPERATOR_TENANT``)."""
    principal = await caller(request)
    principal.require_operator()
    return principal
