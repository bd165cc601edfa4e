"""Request middleware, plain ASGI callables: authentication, then the body's limits.

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
2. :class:`BodyLimit` — a ``Content-Length`` over ``max_bytes`` gets 413 ``payload_too_large``
   at once; a body without one (chunked) is counted as it arrives and cut off at the limit;
   the refusal closes the connection (the rest of the body is never read). Once the body is
   complete, ``receive`` is the server's own again (a streaming response waits on it for the
   client's disconnect). A request too slow to arrive is cut off by the server's protocol
   (``api/protocol``), with one timer per request instead of one per ``receive``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shipyard.api import audit
from shipyard.api.auth import PRINCIPAL, bearer_secret
from shipyard.api.errors import error_response
from shipyard.api.keys import KeyService, Principal
from shipyard.errors import PayloadTooLarge, ShipyardError
from shipyard.telemetry.audit import AuditSink, NoAudit

log = structlog.get_logger(__name__)

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
    response = error_response(error.status, error.code, error.message, error.details)
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
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        request_id = audit.request_id(scope)
        try:
            principal = await self.keys.verify(bearer_secret(header))
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
        """The app, with the request's audit row recorded as its answer starts."""
        recorded = False
        header = (b"x-request-id", request_id.encode())

        async def sending(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                self.audit.record(audit.entry(scope, principal, message["status"]))
                message = {**message, "headers": [*message.get("headers", ()), header]}
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
        began = datetime.now(UTC)
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
            made = audit.entry(
                scope, principal if isinstance(principal, Principal) else None, status
            )
            self.audit.record(replace(made, at=began))


def _adding(send: Send, header: tuple[bytes, bytes]) -> Send:
    """``send``, with ``header`` added to the answer."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), header]}
        await send(message)

    return sending


def has_body(scope: Scope) -> bool:
    """The request announces a body (which a refusal leaves unread)."""
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


def content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = content_length(scope)
        if length is not None and length > self.max_bytes:
            await refuse(scope, receive, send, self.too_large())
            return
        if not has_body(scope):  # nothing to count or wait for
            await self.app(scope, receive, send)
            return
        body = _Body(self, scope, receive, send)
        try:
            await self.app(scope, body.receive, body.send)
        except Exception:
            if body.error is None or body.started:
                raise  # not ours, or too late to answer: the error middleware outside acts
        if body.error is not None and not body.answered and not body.started:
            body.answered = True
            await refuse(scope, receive, send, body.error)

    def too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the request body is over {self.max_bytes} bytes (SHIPYARD_MAX_BODY_BYTES)",
            details={"max_bytes": self.max_bytes},
        )


@dataclass(slots=True)
class _Body:
    """One request's body as it arrives: counted, and refused when over the limit.

    The app may turn the error ``receive`` raises into an answer of its own (FastAPI answers 400
    to any failure while reading a body); ``send`` puts the real refusal in its place.
    """

    limit: BodyLimit
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
        if self.received > self.limit.max_bytes:
            self.error = self.limit.too_large()
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
