"""Trace context leaves over HTTP too: a model call sends its span as ``traceparent``, so a model
server that traces joins the run's trace. The receiver here records what arrives, then refuses
(the adapters' real-server behaviour is tested against llama.cpp elsewhere)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import shipyard
from shipyard.agents.context import RunRequest
from shipyard.app import build_services
from shipyard.config import load_settings
from shipyard.errors import ModelError
from shipyard.models import anthropic, openai
from shipyard.models.base import ModelRequest, UserMessage
from shipyard.telemetry.tracecontext import TraceParent


class Recorder:
    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                recorder.headers.append({k.lower(): v for k, v in self.headers.items()})
                body = b'{"error": {"message": "recorded", "type": "server_error"}}'
                self.send_response(500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def receiver() -> Iterator[Recorder]:
    recording = Recorder()
    yield recording
    recording.server.shutdown()
    recording.server.server_close()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_each_provider_sends_the_calls_traceparent(receiver: Recorder, provider: str) -> None:
    parent = TraceParent.new().header()
    model = (
        openai.from_reference("m", {"base_url": f"{receiver.url}/v1", "max_retries": "0"})
        if provider == "openai"
        else anthropic.from_reference("m", {"base_url": receiver.url, "max_retries": "0"})
    )
    request = ModelRequest(messages=(UserMessage(content="hi"),), traceparent=parent)
    try:
        with pytest.raises(ModelError):
            async for _ in model.stream(request):
                pass
    finally:
        await model.aclose()
    assert [h.get("traceparent") for h in receiver.headers] == [parent]


async def test_the_header_names_the_model_calls_span(receiver: Recorder, tmp_path: Path) -> None:
    agent = shipyard.Agent(
        name="remote", model=f"openai:m?base_url={receiver.url}/v1&max_retries=0"
    )
    services = build_services(shipyard.App(agents=[agent]), load_settings(home=tmp_path))
    await services.records.migrate()
    await services.start()
    caller = TraceParent.new()
    try:
        with pytest.raises(ModelError):
            await services.invoker.invoke(
                RunRequest(tenant_id="default", agent="remote", input="hi", parent=caller)
            )
        [run] = (await services.records.list_runs("default")).items
        events = await services.records.list_events("default", run.id)
    finally:
        await services.close()
    [request] = [e for e in events if e.type == "llm.request"]
    assert receiver.headers[0]["traceparent"] == f"00-{caller.trace_id}-{request.span_id}-01"
