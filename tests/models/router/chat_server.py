"""A tiny real OpenAI-compatible server (Chat Completions, streamed) for router tests.

It runs under uvicorn on a free loopback port in the test's event loop, answers every request
with ``answer``, or with a scripted failure first (``fail_with``: a status and headers, for a
number of requests), counts the requests it got, and can be stopped like a crashed server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.servers import free_port


@dataclass
class ChatServer:
    answer: str = "hello from the server"
    fail_status: int | None = None
    fail_headers: dict[str, str] = field(default_factory=dict)
    fail_times: int = 0
    requests: int = 0
    port: int = field(default_factory=free_port)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def ref(self, model: str = "gpt-4.1-mini") -> str:
        return f"openai:{model}?base_url={self.base_url}&max_retries=0&timeout=5"

    async def _chat(self, request: Request) -> Response:
        self.requests += 1
        body = await request.json()
        if self.fail_status is not None and self.fail_times > 0:
            self.fail_times -= 1
            error = {"error": {"message": "scripted failure", "type": "server_error"}}
            return JSONResponse(error, status_code=self.fail_status, headers=self.fail_headers)
        return StreamingResponse(self._chunks(body["model"]), media_type="text/event-stream")

    async def _chunks(self, model: str) -> AsyncIterator[str]:
        base: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk", "created": 0}
        base["model"] = model
        delta = {"role": "assistant", "content": self.answer}
        yield _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        usage = {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}
        yield _sse({**base, "choices": [], "usage": usage})
        yield "data: [DONE]\n\n"

    async def start(self) -> ChatServer:
        app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])
        config = uvicorn.Config(  # log_config None: leave the process's logging as it is
            app, host="127.0.0.1", port=self.port, log_level="warning", log_config=None
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(200):
            if self._server.started:
                return self
            await asyncio.sleep(0.02)
        raise RuntimeError("the chat server did not start")

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"
