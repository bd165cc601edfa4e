"""A webhook delivery carries the task's trace context, so the receiver's work joins its trace."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shipyard.guard.egress import EgressPolicy
from shipyard.runtime.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookSender,
    tenant_secret,
    verify,
)
from shipyard.telemetry.tracecontext import TraceParent


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, str]]]]:
    received: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


async def test_the_traceparent_travels_with_the_signed_delivery(
    receiver: tuple[str, list[dict[str, str]]],
) -> None:
    url, received = receiver
    sender = WebhookSender("k" * 32, attempts=1, policy=EgressPolicy.from_setting("127.0.0.1"))
    caller = TraceParent.new()
    try:
        body = b'{"id": "1"}'
        traced_attempt = await sender.attempt(
            url, tenant_id="acme", event_id="1", body=body, number=1, traceparent=caller.header()
        )
        assert traced_attempt == "delivered"
        plain = await sender.attempt(url, tenant_id="acme", event_id="2", body=body, number=1)
        assert plain == "delivered"
    finally:
        await sender.close()
    traced, untraced = received
    assert TraceParent.parse(traced["traceparent"]) == caller
    assert "traceparent" not in untraced
    secret = tenant_secret("k" * 32, "acme")
    assert verify(secret, traced[TIMESTAMP_HEADER.lower()], body, traced[SIGNATURE_HEADER.lower()])
