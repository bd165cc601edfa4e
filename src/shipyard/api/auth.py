"""Bearer-key authentication and scope checks, shared by the HTTP routes and the WebSockets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

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


def require(scope: Scope) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that authenticates the caller and checks ``scope``."""

    async def dependency(request: Request) -> Principal:
        secret = bearer_secret(request.headers.get("authorization"))
        return await authenticate(request.app.state.keys, secret, scope)

    return dependency
