"""Local HTTP servers that record what reaches them: an OpenAI-compatible chat server (a tool
call first when the request offers tools, then an answer) and a plain API that a tool calls."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [choice]}  # fmt: skip


def chat_stream(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The chunks of one answer: a call of every tool offered unless tools answered already."""
    last = body["messages"][-1]["role"]
    if body.get("tools") and last != "tool":
        calls = [
            {"index": i, "id": f"call_{i}", "type": "function",
             "function": {"name": tool["function"]["name"], "arguments": "{}"}}
            for i, tool in enumerate(body["tools"])
        ]  # fmt: skip
        chunks = [_chunk({"role": "assistant", "tool_calls": calls}), _chunk({}, "tool_calls")]
    else:
        chunks = [_chunk({"role": "assistant", "content": "all done"}), _chunk({}, "stop")]
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    return [*chunks, {"id": "c1", "object": "chat.completion.chunk", "created": 0,
                      "model": "m", "choices": [], "usage": usage}]  # fmt: skip


class Receiver:
    """Records each request's headers and body; answers chat completions on
    ``/v1/chat/completions``, echoes the ``Authorization`` header on ``/echo`` (a careless
    service) and answers ``{"ok": true}`` anywhere else."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> bytes:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.append((self.path, headers))
                receiver.bodies.append(body)
                return body

            def do_GET(self) -> None:
                self._record()
                if self.path.startswith("/echo"):
                    echoed = {"you_sent": self.headers.get("Authorization")}
                    self._send("application/json", json.dumps(echoed).encode())
                    return
                self._send("application/json", b'{"ok": true}')

            def do_POST(self) -> None:
                body = self._record()
                key = self.headers.get("Authorization", "")
                if "quote-me" in key:  # a server that quotes a bad key back
                    error = {"error": {"message": f"Incorrect API key provided: {key[7:]}"}}
                    self._send("application/json", json.dumps(error).encode(), 401)
                    return
                if not self.path.endswith("/chat/completions"):
                    self._send("application/json", b'{"ok": true}')
                    return
                chunks = chat_stream(json.loads(body))
                text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
                self._send("text/event-stream", text.encode())

            def _send(self, content_type: str, payload: bytes, status: int = 200) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def authorizations(self, path_part: str) -> list[str | None]:
        return [h.get("authorization") for p, h in self.requests if path_part in p]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
