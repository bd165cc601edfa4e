"""uvicorn's httptools protocol: a deadline for a request to arrive, and JSON errors.

uvicorn bounds only the idle time between requests (``timeout_keep_alive``, reset by every byte
received), so a client that sends half its headers or body, or trickles them, holds a connection
open for ever; ASGI middleware cannot bound the headers (the app is called once they are
complete) and would pay a timer per ``receive`` for the body. This protocol gives a request
``headers_timeout_s`` to arrive whole, from the connection's start, or from the first byte of
the next request on a kept-alive connection: one timer per request, armed when it begins and
cancelled when its last byte is in. Past it the client gets ``408 request_timeout`` (unless the
app has begun its answer) and the connection is closed.

A request the HTTP parser refuses (a raw control character or non-ASCII byte in the URL, a
broken request line) never reaches the app: uvicorn answers it a plain-text 400. Here it gets
the API's JSON error, 400 ``malformed_request``, and the connection is closed.

uvicorn takes a protocol class as its ``http`` option; this one overrides five of
``HttpToolsProtocol``'s callbacks and calls each original, and replaces its 400 answer.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shipyard.errors import MalformedRequest, RequestTimeout, ShipyardError


def _closing_response(error: ShipyardError, reason: str) -> bytes:
    """A whole JSON error answer that closes the connection."""
    body = json.dumps({"error": error.to_dict()}).encode()
    head = (
        f"HTTP/1.1 {error.status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


def _timeout_response(timeout_s: float) -> bytes:
    message = f"the request did not arrive within {timeout_s:g} s (SHIPYARD_REQUEST_TIMEOUT_S)"
    return _closing_response(RequestTimeout(message), "Request Timeout")


class HeadersDeadlineProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that closes a connection whose request is late."""

    headers_timeout_s = 30.0
    _headers_timer: asyncio.TimerHandle | None = None
    _in_app = False  # this request's headers are in: its cycle is ``self.cycle``

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_app = False
        self._arm()  # a kept-alive connection's next request: its headers are due in time too

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._in_app = True

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """The parser refused the request (uvicorn's ``msg`` says only that): a JSON 400."""
        message = "the HTTP request is malformed (a URL must be percent-encoded ASCII)"
        self.transport.write(_closing_response(MalformedRequest(message), "Bad Request"))
        self.transport.close()

    def _arm(self) -> None:
        if self._headers_timer is None:
            self._headers_timer = self.loop.call_later(self.headers_timeout_s, self._late)

    def _disarm(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None

    def _late(self) -> None:
        self._headers_timer = None
        if not self.transport.is_closing():
            if not (self._in_app and self.cycle.response_started):  # else its answer is out
                self.transport.write(_timeout_response(self.headers_timeout_s))
            self.transport.close()


def headers_deadline_protocol(timeout_s: float) -> type[HeadersDeadlineProtocol]:
    """The protocol class to give uvicorn (``http=``), with ``timeout_s`` for the headers."""
    return type("HeadersDeadline", (HeadersDeadlineProtocol,), {"headers_timeout_s": timeout_s})
