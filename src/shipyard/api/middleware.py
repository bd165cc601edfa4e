"""Request middleware, plain ASGI callables: authentication, rate limits, the body's limits.

Both act before the app reads a byte of the body, so a stranger's or an oversized upload costs
the server a few kilobytes of socket buffer, not the upload:

1. :class:`Authenticate` — the API (``/v1/...`` and ``/metrics``) needs a live key in
   ``Authorization: Bearer <key>``; without one the answer is 401 at once, the body unread.
   Every API request, allowed or refused, leaves one row in the audit log (``api/audit``),
   recorded when its answer starts; the answer carries its ``X-Request-Id``.
   The rest (health, the API docs and their assets, unknown paths) passes through: none of it
   reads a body. The principal is kept in the scope for the routes' scope checks
   (``auth.require``), so a request verifies its key once. WebSockets authenticate in their
   route (they also take ``?access_token=``).
2. :class:`RateLimit` — an API request (``/v1/...``) of a tenant or key over its request rate
   gets 429 ``rate_limited`` at once, the body unread, with ``Retry-After`` and
   ``RateLimit-Limit`` / ``-Remaining`` / ``-Reset``; an admitted one carries the
   ``RateLimit-*`` headers on its answer. One state-store round trip (``runtime.limits``),
   none when the tenant has no request limit.
3. :class:`BodyLimit` — a ``Content-Length`` over ``max_bytes`` (or the tenant's own
   ``limits.max_body_bytes``) gets 413 ``payload_too_large``
   at once; a body without one (chunked) is counted as it arrives and cut off at the limit;
   the refusal closes the connection (the rest of the body is never read). Once the body is
   complete, ``receive`` is the server's own again (a streaming response waits on it for the
   client's disconnect). A request too slow to arrive is cut off by the server's protocol
   (``api/protocol``), with one timer per request instead of one per ``receive``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shipyard.api import audit
from shipyard.api.auth import PRINCIPAL, bearer_secret
from shipyard.api.errors import error_response
from shipyard.api.keys import KeyService, Principal
from shipyard.errors import PayloadTooLarge, ShipyardError, rate_limit_headers
from shipyard.runtime.limits import Limiter, calling_key
from shipyard.runtime.tenants import TenantPolicies
from shipyard.telemetry.audit import AuditSink, NoAudit

log = structlog.get_logger(__name__)

RESPONSE_HEADERS = "shipyard.response_headers"
"""Headers that middleware inside ``Authenticate`` adds to the answer (``Authenticate`` adds
them when the answer starts, with the request id)."""
API_PREFIX = "/v1/"
API_PATHS = frozenset({"/metrics"})


def is_api(path: str) -> bool:
    """The routes that need a key (the others are public: health, docs)."""
    return path.startswith(API_PREFIX) or path in API_PATHS


async def refuse(
    scope: Scope, receive: Receive, send: Send, error: ShipyardError, *, close: bool = True
) -> None:
    """Answer ``error``; with ``close``, close the connection too (the rest of the request's
    body is never read)."""
    if error.status >= 500:
        log.warning("request failed", path=scope["path"], code=error.code, error=error.message)
    body = error.to_dict()  # a store's error says no more than the operation
    response = error_response(
        error.status, error.code, body["message"], body.get("details"), error.http_headers()
    )
    if close:
        response.headers["Connection"] = "close"
    await response(scope, receive, send)


class Authenticate:
    def __init__(self, app: ASGIApp, keys: KeyService, audit: AuditSink | None = None) -> None:
        self.app = app
        self.keys = keys
        self.audit = audit or NoAudit()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and is_api(scope["path"]):
            await self._audited_websocket(scope, receive, send)
            return
        if scope["type"] != "http" or not is_api(scope["path"]):
            await self.app(scope, receive, send)
            return
        header, request_id = audit.request_headers(scope)
        try:
            secret = bearer_secret(None if header is None else header.decode("latin-1"))
            principal = await self.keys.verify(secret)
        except ShipyardError as exc:  # 401; or 503 when the key store does not answer
            key_id = getattr(exc, "key_id", None)
            self.audit.record(audit.entry(scope, None, exc.status, key_id=key_id))
            tagged = _adding(send, (b"x-request-id", request_id.encode()))
            await refuse(scope, receive, tagged, exc, close=has_body(scope))
            return
        scope[PRINCIPAL] = principal
        await self._audited(scope, receive, send, principal, request_id)

    async def _audited(
        self, scope: Scope, receive: Receive, send: Send, principal: Principal, request_id: str
    ) -> None:
        """The app, with the request's audit row recorded as its answer starts. The answer's
        headers get the request id and what the middleware inside left under
        ``RESPONSE_HEADERS`` (``RateLimit``'s), in this one wrapper of ``send``."""
        recorded = False
        header = (b"x-request-id", request_id.encode())

        async def sending(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                self.audit.record(audit.entry(scope, principal, message["status"]))
                extra = scope.get(RESPONSE_HEADERS, ())
                message = {**message, "headers": [*message.get("headers", ()), *extra, header]}
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if not recorded:  # the app failed before answering
                self.audit.record(audit.entry(scope, principal, 500))

    async def _audited_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket authenticates in its route (which leaves the principal in the scope);
        its row is recorded when it ends, with the time it began: status 101 if it was
        accepted and authenticated, else the refusal's (a close code 4000 + status)."""
        audit.request_id(scope)
        began = time.time()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "websocket.accept":
                status = 101
            elif message["type"] == "websocket.close" and message.get("code", 1000) >= 4000:
                status = min(message["code"] - 4000, 599) if status == 101 else status
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            principal = scope.get(PRINCIPAL)
            who = principal if isinstance(principal, Principal) else None
            self.audit.record(audit.entry(scope, who, status, at=began))


def _adding(send: Send, header: tuple[bytes, bytes]) -> Send:
    """``send``, with ``header`` added to the answer."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), header]}
        await send(message)

    return sending


class RateLimit:
    def __init__(self, app: ASGIApp, limiter: Limiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = scope.get(PRINCIPAL)
        if principal is None or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        token = calling_key.set(principal.key_id)  # for its runs' token limits
        try:
            await self._admit(principal, scope, receive, send)
        finally:
            calling_key.reset(token)

    async def _admit(self, who: Principal, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            quota = await self.limiter.admit_request(who.tenant_id, who.key_id)
        except ShipyardError as exc:  # 429; or 503 when the state store does not answer
            await refuse(scope, receive, send, exc, close=has_body(scope))
            return
        if quota is None:
            await self.app(scope, receive, send)
            return
        scope[RESPONSE_HEADERS] = [
            (name.lower().encode(), value.encode())
            for name, value in rate_limit_headers(
                quota.limit, quota.remaining, quota.reset_s
            ).items()
        ]  # sent by Authenticate's wrapper of ``send``, outside: one wrapper, not two
        await self.app(scope, receive, send)


def has_body(scope: Scope) -> bool:
    """The request announces a body (which a refusal leaves unread)."""
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


def _framing(scope: Scope) -> tuple[int | None, bool]:
    """The request's ``Content-Length`` (``None``: absent or unreadable) and whether its body
    must be counted as it arrives (chunked, or a length the server cannot go by)."""
    length, counted = None, False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                counted = True
        elif name == b"transfer-encoding":
            counted = True
    return length, counted


class BodyLimit:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        tenants: TenantPolicies | None = None,
        artifact_max_bytes: int | None = None,
    ) -> None:
        """``tenants``: where a tenant's own ``limits.max_body_bytes`` is read (through the
        policies' cache), which overrides ``max_bytes`` for its requests.
        ``artifact_max_bytes``: the limit of an upload (``POST /v1/artifacts``) instead."""
        self.app = app
        self.max_bytes = max_bytes
        self.tenants = tenants
        self.artifact_max_bytes = artifact_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not has_body(scope):  # nothing to count or wait for
            await self.app(scope, receive, send)
            return
        try:
            max_bytes, source = await self._limit(scope)
        except ShipyardError as exc:  # the tenant's policy cannot be read: 503
            await refuse(scope, receive, send, exc)
            return
        length, chunked = _framing(scope)
        if length is not None and length > max_bytes:
            await refuse(scope, receive, send, too_large(max_bytes, source))
            return
        if not chunked:  # a body the server reads to its Content-Length and no further
            await self.app(scope, receive, send)
            return
        body = _Body(max_bytes, source, scope, receive, send)
        try:
            await self.app(scope, body.receive, body.send)
        except Exception:
            if body.error is None or body.started:
                raise  # not ours, or too late to answer: the error middleware outside acts
        if body.error is not None and not body.answered and not body.started:
            body.answered = True
            await refuse(scope, receive, send, body.error)

    async def _limit(self, scope: Scope) -> tuple[int, str]:
        """The request's limit, and where it comes from."""
        if self.artifact_max_bytes is not None and scope["path"] == "/v1/artifacts":
            return self.artifact_max_bytes, "SHIPYARD_MAX_ARTIFACT_BYTES"
        principal = scope.get(PRINCIPAL)
        if self.tenants is not None and principal is not None:
            own = (await self.tenants.policy(principal.tenant_id)).limits.max_body_bytes
            if own is not None:
                return own, "the tenant's limits.max_body_bytes"
        return self.max_bytes, "SHIPYARD_MAX_BODY_BYTES"


def too_large(max_bytes: int, source: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is over {max_bytes} bytes ({source})",
        details={"max_bytes": max_bytes},
    )


@dataclass(slots=True)
class _Body:
    """One request's body as it arrives: counted, and refused when over the limit.

    The app may turn the error ``receive`` raises into an answer of its own (FastAPI answers 400
    to any failure while reading a body); ``send`` puts the real refusal in its place.
    """

    max_bytes: int
    source: str
    scope: Scope
    _receive: Receive
    _send: Send
    received: int = 0
    complete: bool = False
    error: ShipyardError | None = None
    started: bool = False  # the app's response began before the body failed
    answered: bool = False

    async def receive(self) -> Message:
        if self.complete:
            return await self._receive()
        if self.error is not None:
            raise self.error
        message = await self._receive()
        if message["type"] != "http.request":
            self.complete = True
            return message
        self.received += len(message.get("body", b""))
        if self.received > self.max_bytes:
            self.error = too_large(self.max_bytes, self.source)
            raise self.error
        self.complete = not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        if self.error is None or self.started:
            self.started = self.started or message["type"] == "http.response.start"
            await self._send(message)
        elif not self.answered and message["type"] == "http.response.start":
            self.answered = True  # the app's own answer to the failed read is dropped
            await refuse(self.scope, self._receive, self._send, self.error)
