"""Who is looking at the dashboard: sign-in with an API key, a cookie session, CSRF tokens.

The key typed at sign-in is checked like a bearer key (``KeyService.verify``); the session
cookie keeps its sha256 (never the key itself, so the key cannot be read back from the browser),
signed (Starlette's ``SessionMiddleware``, itsdangerous), ``HttpOnly`` (no script reads it) and
``SameSite=Strict`` (no other site sends it). Every page verifies the hash again through the key
service's short cache, so a revoked key signs its sessions out within ``SHIPYARD_KEY_CACHE_S``.
Every action (a POST) carries the session's CSRF token in a form field; a POST without the
right one is refused with 403 before it does anything.

What a viewer sees is what its key sees through the API (``Principal``): its own tenant, and
for the operator's admin keys any tenant (chosen with ``?tenant=``).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request

from shipyard.api.keys import Principal, hash_key
from shipyard.api.state import keys as state_keys
from shipyard.errors import AuthError, Forbidden, InvalidInput
from shipyard.stores.records.base import Scope

SESSION_KEY = "key_sha256"
CSRF_KEY = "csrf"
CSRF_FIELD = "csrf"


class SignInRequired(Exception):
    """Not signed in (or the key stopped working): the page answers with a redirect to sign-in."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass(frozen=True, slots=True)
class Viewer:
    """A signed-in key and the tenant whose data the page shows."""

    principal: Principal
    tenant_id: str
    csrf: str

    def can(self, scope: Scope) -> bool:
        """Whether the key passes the API's own scope check (``Principal.require``)."""
        try:
            self.principal.require(scope)
        except Forbidden:
            return False
        return True

    @property
    def operator(self) -> bool:
        return self.principal.operator


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (also before sign-in, for its form)."""
    token = request.session.get(CSRF_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[CSRF_KEY] = token
    return token


async def sign_in(request: Request, secret: str) -> Principal:
    """Check the key (it needs ``read``) and start a session with a fresh CSRF token."""
    principal = await state_keys(request).verify(secret.strip())
    principal.require("read")
    request.session.clear()
    request.session[SESSION_KEY] = hash_key(secret.strip())
    request.session[CSRF_KEY] = secrets.token_urlsafe(32)
    return principal


def sign_out(request: Request) -> None:
    request.session.clear()


async def current_viewer(request: Request) -> Viewer:
    """The signed-in viewer, or ``SignInRequired`` (a redirect) for a missing or dead key."""
    digest = request.session.get(SESSION_KEY)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not isinstance(digest, str):
        raise SignInRequired(here)
    try:
        principal = await state_keys(request).verify_digest(digest)
    except AuthError:
        request.session.clear()
        raise SignInRequired(here) from None
    tenant = request.query_params.get("tenant") or principal.tenant_id
    if tenant != principal.tenant_id and not principal.operator:
        raise Forbidden("a tenant's key sees its own tenant only")
    if len(tenant) > 200 or not all(c.isalnum() or c in "-_." for c in tenant):
        raise InvalidInput("tenant must be letters, digits, '-', '_' or '.'")
    return Viewer(principal, tenant, csrf_token(request))


CurrentViewer = Annotated[Viewer, Depends(current_viewer)]


async def acting_viewer(request: Request) -> Viewer:
    """The viewer of a POST whose form carries the session's CSRF token (else 403)."""
    viewer = await current_viewer(request)
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    if not isinstance(sent, str) or not hmac.compare_digest(sent, viewer.csrf):
        raise Forbidden("missing or wrong CSRF token: reload the page and try again")
    return viewer


ActingViewer = Annotated[Viewer, Depends(acting_viewer)]


def require_scope(viewer: Viewer, scope: Scope) -> None:
    """403 unless the key has ``scope``: the API's check (``Principal.require``)."""
    viewer.principal.require(scope)


def login_url(next_path: str) -> str:
    return "/ui/login?next=" + quote(next_path, safe="")


def safe_next(raw: str | None) -> str:
    """Where to go after sign-in: a path of the dashboard only (never another site)."""
    if raw and raw.startswith("/ui") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return "/ui/"
