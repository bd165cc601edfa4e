"""Real local HTTP servers for the egress tests: answers, redirects, big and slow bodies.

Routes (any method): ``/ok`` (200 ``ok``), ``/to?u=<url>&code=<3xx>`` (a redirect to ``u``),
``/big?n=<bytes>`` (``n`` bytes with a ``Content-Length``), ``/stream?n=<bytes>`` (``n`` bytes,
no length: the body ends when the connection closes), ``/slow`` (answers when the test ends).
Every request's method and path is kept in ``seen``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit


@dataclass
class Receiver:
    port: int
    seen: list[tuple[str, str]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = "/ok", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def hop(self, to: str, code: int = 302) -> str:
        """A URL on this receiver that redirects to ``to``."""
        return self.url(f"/to?code={code}&u={quote(to, safe='')}")


class _Handler(BaseHTTPRequestHandler):
    receiver: Receiver

    def _answer(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.receiver.seen.append((self.command, parts.path))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if parts.path == "/to":
            self.send_response(int(query.get("code", "302")))
            self.send_header("Location", query["u"])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif parts.path in ("/big", "/stream"):
            size = int(query["n"])
            self.send_response(200)
            if parts.path == "/big":
                self.send_header("Content-Length", str(size))
            self.end_headers()
            for start in range(0, size, 4096):
                self.wfile.write(b"x" * min(4096, size - start))
        else:
            if parts.path == "/slow":
                self.receiver.release.wait(30)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _answer

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def receiving() -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    receiver = Receiver(server.server_address[1])
    server.RequestHandlerClass = type("Handler", (_Handler,), {"receiver": receiver})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
