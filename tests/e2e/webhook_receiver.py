"""A webhook receiver for the end-to-end tests: records every delivery and answers with the
status its policy gives for the n-th one."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    def __init__(self, status_for: Callable[[int], int]) -> None:
        """``status_for(n)``: the answer to the n-th delivery (0-based)."""
        self.received: list[tuple[int, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = status_for(len(receiver.received))
                receiver.received.append((status, dict(self.headers), body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    @property
    def allow(self) -> str:
        """The ``SHIPYARD_WEBHOOK_ALLOW`` entry that lets deliveries reach this receiver (the
        egress policy refuses loopback addresses otherwise)."""
        return f"127.0.0.1:{self._server.server_address[1]}"

    def wait_for(self, count: int, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while len(self.received) < count:
            assert time.monotonic() < deadline, self.received
            time.sleep(0.02)

    def check_signatures(self, secret: str) -> None:
        """Every delivery is signed: HMAC-SHA256 of ``"<timestamp>.<body>"``."""
        for _, headers, body in self.received:
            timestamp = headers["Webhook-Timestamp"]
            expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
            assert headers["Webhook-Signature"] == f"v1={expected.hexdigest()}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
