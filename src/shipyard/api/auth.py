"""Bearer-key authentication and scope checks, as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from shipyard.api.keys import KeyService, Principal
from shipyard.errors import AuthError
from shipyard.stores.records.base import Scope


def require(scope: Scope) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that authenticates the caller and checks ``scope``."""

    async def dependency(request: Request) -> Principal:
        header = request.headers.get("authorization")
        if not header:
            raise AuthError("missing Authorization: Bearer <key> header")
        kind, _, secret = header.partition(" ")
        if kind.lower() != "bearer" or not secret.strip():
            raise AuthError("the Authorization header must be 'Bearer <key>'")
        keys: KeyService = request.app.state.keys
        principal = await keys.verify(secret.strip())
        principal.require(scope)
        return principal

    return dependency
