"""``/ui/login`` and ``/ui/logout``: an API key in, a cookie session out."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from shipyard.api.ui.render import page
from shipyard.api.ui.session import (
    CSRF_FIELD,
    ActingViewer,
    csrf_token,
    safe_next,
    sign_in,
    sign_out,
)
from shipyard.api.ui.state import signin_throttle
from shipyard.errors import AuthError, Forbidden

router = APIRouter()
MAX_KEY_CHARS = 200


@router.get("/login", include_in_schema=False)
async def login_form(request: Request, next: str | None = None) -> Response:
    return page(request, "login.html", None, next=safe_next(next), csrf=csrf_token(request))


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    """A wrong key re-shows the form with 401; the form's CSRF token is checked first, so no
    other site can sign a browser in with a key of its choosing. Failures are throttled by
    client address (``throttle``): past the limit, 429 without checking the key."""
    form = await request.form()
    key, sent, target = form.get("key"), form.get(CSRF_FIELD), form.get("next")
    expected = csrf_token(request)
    if not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
        raise Forbidden("missing or wrong CSRF token: reload the page and try again")
    target = safe_next(target if isinstance(target, str) else None)
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_CHARS:
        return _refused(request, target, "Enter an API key.", 422)
    throttle = signin_throttle(request)
    await throttle.check(request)  # 429 page once this address has failed too often
    try:
        await sign_in(request, key)
    except AuthError:
        await throttle.failed(request)
        return _refused(request, target, "That key is not valid (unknown, revoked or expired).")
    except Forbidden:
        await throttle.failed(request)
        return _refused(request, target, "That key lacks the read scope.", 403)
    return RedirectResponse(target, status_code=303)


def _refused(request: Request, target: str, message: str, status: int = 401) -> Response:
    return page(
        request,
        "login.html",
        None,
        status=status,
        next=target,
        csrf=csrf_token(request),
        error=message,
    )


@router.post("/logout", include_in_schema=False)
async def logout(request: Request, viewer: ActingViewer) -> Response:
    sign_out(request)
    return RedirectResponse("/ui/login", status_code=303)
