"""Event processors: every event of a run passes through them, in order, before any sink —
the records, the SSE stream and the log see only what they let through."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shipyard import Agent, App, Event
from shipyard.agents.context import RunRequest
from shipyard.config import load_settings
from shipyard.runtime.services import Services
from shipyard.telemetry.eventlog import Redactor
from shipyard.telemetry.events import Emitter
from tests.telemetry.conftest import LogBuffer

ADMIN = "sk_shp_test_admin_processors"
SECRET = "s3cret"


class RedactSecret:
    """Replaces the secret wherever it appears in an event's data."""

    def process(self, event: Event) -> list[Event]:
        text = json.dumps(event.data)
        if SECRET not in text:
            return [event]
        data = json.loads(text.replace(SECRET, "[redacted]"))
        return [event.model_copy(update={"data": data})]

    def flush(self) -> list[Event]:
        return []


class HoldDeltas:
    """Holds every streamed delta back until the model's response (or the end of the run)."""

    def __init__(self) -> None:
        self.held: list[Event] = []

    def process(self, event: Event) -> list[Event]:
        if event.type == "llm.delta":
            self.held.append(event)
            return []
        released, self.held = self.held, []
        return [*released, event]

    def flush(self) -> list[Event]:
        released, self.held = self.held, []
        return released


class DropRequests:
    def process(self, event: Event) -> list[Event]:
        return [] if event.type == "llm.request" else [event]

    def flush(self) -> list[Event]:
        return []


@pytest.fixture
async def app(
    tmp_path: Path, log_to: Callable[..., LogBuffer]
) -> AsyncIterator[tuple[FastAPI, LogBuffer]]:
    logs = log_to("debug")  # bodies are logged at debug
    settings = load_settings(
        home=tmp_path, admin_key=ADMIN, log_level="debug", log_events=True, metrics=False
    )
    shipyard = App(
        agents=[Agent(name="echo", model="scripted:echo")],
        event_processors=[RedactSecret, HoldDeltas, DropRequests],
    )
    asgi = shipyard.asgi(settings)
    async with asgi.router.lifespan_context(asgi):
        yield asgi, logs


async def sse_events(app: FastAPI, text: str) -> list[dict[str, Any]]:
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {ADMIN}", "Accept": "text/event-stream"}
    async with httpx.AsyncClient(transport=transport, base_url="http://s", headers=headers) as c:
        reply = await c.post("/v1/agents/echo/invoke", json={"input": text})
    assert reply.status_code == 200, reply.text
    return [json.loads(line[5:]) for line in reply.text.splitlines() if line.startswith("data:")]


async def test_a_processor_redacts_before_the_records_the_stream_and_the_log(
    app: tuple[FastAPI, LogBuffer],
) -> None:
    asgi, logs = app
    streamed = await sse_events(asgi, f"my password is {SECRET} ok")
    services: Services = asgi.state.services
    [run] = (await services.records.list_runs("default")).items
    stored = await services.records.list_events("default", run.id)

    assert SECRET not in json.dumps(streamed)
    assert SECRET not in json.dumps([e.model_dump() for e in stored])
    assert SECRET not in logs.stream.getvalue()
    assert run.input == "my password is [redacted] ok"
    assert run.output == "echo: my password is [redacted] ok"
    assert [r["input"] for r in logs.events() if r["event"] == "run.started"] == [run.input]
    # the later processors saw it too: no llm.request anywhere, and no gap in seq
    assert "llm.request" not in {e["type"] for e in streamed} | {e.type for e in stored}
    assert [e["seq"] for e in streamed] == list(range(1, len(streamed) + 1))


async def test_held_back_deltas_are_released_later_in_order(
    app: tuple[FastAPI, LogBuffer],
) -> None:
    asgi, _ = app
    streamed = await sse_events(asgi, "one two three four")
    kinds = [e["type"] for e in streamed]
    assert kinds == [
        "run.started", "llm.delta", "llm.delta", "llm.delta", "llm.delta", "llm.delta",
        "llm.response", "run.completed",
    ]  # fmt: skip
    deltas = [e["data"]["text"] for e in streamed if e["type"] == "llm.delta"]
    assert deltas == ["echo:", " one", " two", " three", " four"]


def test_flush_releases_what_is_held_before_the_terminal_event() -> None:
    seen: list[Event] = []
    emitter = Emitter(
        run_id="run_1",
        tenant_id="t",
        agent="a",
        trace_id="1" * 32,
        span_id="2" * 16,
        sinks=[seen.append],
        stream_deltas=True,
        processors=[HoldDeltas()],
    )
    emitter.emit("run.started", input="x")
    emitter.emit("llm.delta", text="a")
    emitter.emit("llm.delta", text="b")
    assert [e.type for e in seen] == ["run.started"]  # held back
    emitter.emit("run.completed", output="ab")
    assert [(e.type, e.data.get("text")) for e in seen] == [
        ("run.started", None), ("llm.delta", "a"), ("llm.delta", "b"), ("run.completed", None),
    ]  # fmt: skip
    assert [e.seq for e in seen] == [1, 2, 3, 4]


async def test_set_redactor_redacts_what_the_records_keep(
    tmp_path: Path, redactor: Callable[[Redactor | None], Redactor | None]
) -> None:
    def mask(event: Event, body: dict[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps(body).replace(SECRET, "***"))  # type: ignore[no-any-return]

    redactor(mask)
    settings = load_settings(home=tmp_path, log_events=False, metrics=False)
    from shipyard.app import build_services

    services = build_services(App(agents=[Agent(name="echo", model="scripted:echo")]), settings)
    await services.records.migrate()
    await services.start()
    try:
        request = RunRequest(tenant_id="t", agent="echo", input=f"it is {SECRET}")
        outcome = await services.invoker.invoke(request)
        run = await services.records.get_run("t", outcome.run_id)
    finally:
        await services.close()
    assert run is not None and (run.input, run.output) == ("it is ***", "echo: it is ***")


def test_an_event_the_processors_pass_on_is_not_copied() -> None:
    """It is made with the number it will have; only one that leaves out of turn (held back,
    or after a dropped one) is a numbered copy."""
    seen: list[Event] = []
    emitter = Emitter(
        run_id="run_1",
        tenant_id="t",
        agent="a",
        trace_id="1" * 32,
        span_id="2" * 16,
        sinks=[seen.append],
        stream_deltas=True,
        processors=[HoldDeltas(), DropRequests()],
    )
    started = emitter.emit("run.started", input="x")
    emitter.emit("llm.request", model="m")
    emitter.emit("llm.delta", text="a")
    emitter.emit("llm.delta", text="b")
    response = emitter.emit("llm.response", content="ab")
    assert [e.type for e in seen] == ["run.started", "llm.delta", "llm.delta", "llm.response"]
    assert [e.seq for e in seen] == [1, 2, 3, 4]
    assert seen[0] is started and seen[3] is not response  # the response left after the deltas
