"""A routed call is an ``llm.route`` event in the stored stream, a span event of the model
call's span, and a sample of ``shipyard_router_decisions_total`` (docs/routing.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shipyard import Agent, App
from shipyard.agents.context import RunRequest
from shipyard.app import build_services
from shipyard.config import load_settings
from shipyard.models.router import Router, Rule, Rules
from shipyard.runtime.services import Services
from shipyard.telemetry.tracing import spans_of
from tests.models.router.conftest import Script
from tests.telemetry.scrape import Scrape


@pytest.fixture
async def services(tmp_path: Path, scripted: Script) -> AsyncIterator[Services]:
    strong = scripted("strong", ["strong answer"], (10.0, 30.0))
    cheap = scripted("cheap", ["cheap answer"], (0.5, 1.5))
    rules = Rules([Rule(model=cheap.model, tenant=["free"])], default=strong.model)
    app = App(
        [Agent("helper", model="router:tiered")], routers=[Router("tiered", [strong, cheap], rules)]
    )
    built = build_services(app, load_settings(home=tmp_path, log_events=False))
    await built.records.migrate()
    await built.start()
    try:
        yield built
    finally:
        await built.close()


async def test_each_decision_is_an_event_a_span_event_and_a_metric(services: Services) -> None:
    invoke = services.invoker.invoke
    for tenant in ("free", "free", "acme"):
        await invoke(RunRequest(tenant_id=tenant, agent="helper", input="hello there"))
    outcome = await invoke(RunRequest(tenant_id="free", agent="helper", input="again"))
    assert outcome.output == "cheap answer"
    await services.recorder.durable()
    events = await services.records.list_events("free", outcome.run_id)
    kinds = [e.type for e in events]
    assert kinds == ["run.started", "llm.request", "llm.route", "llm.response", "run.completed"]
    request, route = events[1], events[2]
    assert route.span_id == request.span_id  # on the model call's own span
    data = route.data
    assert data["router"] == "tiered" and data["reason"] == "rule 0"
    assert data["chosen"].endswith("cheap.json") and data["saved_usd"] > 0
    assert len(data["candidates"]) == 2

    spans = spans_of(await services.records.trace_events("free", events[0].trace_id))
    chat = next(s for s in spans if s["span_id"] == request.span_id)
    [mark] = [e for e in chat["events"] if e["name"] == "shipyard.llm.route"]
    assert mark["attributes"]["shipyard.route.router"] == "tiered"

    metrics = services.observability.metrics
    assert metrics is not None
    found = Scrape(metrics.render().decode())
    decisions = "shipyard_router_decisions_total"
    assert found[decisions, {"router": "tiered"}] == 4
    cheap_model = data["chosen"]
    assert found[decisions, {"router": "tiered", "model": cheap_model}] == 3
    assert found["shipyard_router_saved_usd", {"router": "tiered"}] > 0


async def test_a_session_turn_and_a_run_override_route_too(services: Services) -> None:
    session = await services.sessions.create("free", "helper", metadata={}, ttl_s=None)
    turn = await services.sessions.turn(RunRequest.turn("free", session.id, "hi"))
    assert turn.output == "cheap answer"
    await services.recorder.durable()
    events = await services.records.list_events("free", turn.run_id)
    assert [e.data["reason"] for e in events if e.type == "llm.route"] == ["rule 0"]
    plain = await services.invoker.invoke(
        RunRequest(tenant_id="free", agent="helper", input="hi", model="scripted:echo")
    )
    assert plain.output == "echo: hi"  # a run's own model overrides the agent's router
