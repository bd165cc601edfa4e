"""uvicorn's httptools protocol with a deadline for a request's headers.

uvicorn bounds only the idle time between requests (``timeout_keep_alive``, reset by every byte
received), so a client that sends half its headers, or trickles them, holds a connection open
for ever; ASGI middleware cannot help, since the app is called only once the headers are
complete. This protocol gives a request's headers ``headers_timeout_s`` from the connection's
start, or from the first byte of the next request on a kept-alive connection; past it the
client gets ``408 request_timeout`` and the connection is closed. The body's deadline is the
``BodyLimit`` middleware's (``api/middleware``), which answers 408 through the app.

uvicorn takes a protocol class as its ``http`` option; this one overrides four of
``HttpToolsProtocol``'s callbacks and calls each original.
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def _timeout_response(timeout_s: float) -> bytes:
    body = json.dumps(
        {
            "error": {
                "code": "request_timeout",
                "message": f"the request headers did not arrive within {timeout_s:g} s "
                "(SHIPYARD_REQUEST_TIMEOUT_S)",
            }
        }
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class HeadersDeadlineProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that closes a connection whose request headers are late."""

    headers_timeout_s = 30.0
    _headers_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # a kept-alive connection's next request: its headers are due in time too

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

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
            self.transport.write(_timeout_response(self.headers_timeout_s))
            self.transport.close()


def headers_deadline_protocol(timeout_s: float) -> type[HeadersDeadlineProtocol]:
    """The protocol class to give uvicorn (``http=``), with ``timeout_s`` for the headers."""
    return type("HeadersDeadline", (HeadersDeadlineProtocol,), {"headers_timeout_s": timeout_s})
