"""``Metrics`` in one process: the services built by the composition root run real agents,
and the registry's exposition is read back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from shipyard import Agent, App, RunContext, agent, tool
from shipyard.agents.context import RunRequest
from shipyard.app import build_services
from shipyard.config import load_settings
from shipyard.errors import RunFailure
from shipyard.runtime.services import Services
from shipyard.telemetry.metrics import Metrics
from shipyard.testing import ScriptedModel
from tests.servers import free_port
from tests.telemetry.scrape import Scrape


@tool
def explode() -> str:
    """Always fails."""
    raise RuntimeError("boom")


@agent("raises")
async def raises(ctx: RunContext, input: object) -> str:
    raise ValueError("a bug")


def app() -> App:
    confused = ScriptedModel(
        [
            {"tool_calls": [{"name": "teleport-to-mars-42", "arguments": {}}]},
            {"tool_calls": [{"name": "explode", "arguments": {}}]},
            "Gave up.",
        ],
        name="scripted:confused",
    )
    return App(
        agents=[
            Agent(name="echo", model="scripted:echo"),
            Agent(name="confused", model=confused, tools=[explode]),
            raises,
        ]
    )


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    built = build_services(app(), load_settings(home=tmp_path))
    await built.records.migrate()
    await built.start()
    try:
        yield built
    finally:
        await built.close()


def metrics_of(services: Services) -> Metrics:
    metrics = services.observability.metrics
    assert metrics is not None  # on by default
    return metrics


async def test_runs_are_counted_by_execution_model_and_outcome(services: Services) -> None:
    invoker = services.invoker
    await invoker.invoke(RunRequest(tenant_id="acme", agent="echo", input="one"))
    await invoker.invoke(
        RunRequest(tenant_id="acme", agent="echo", input="two", task_id="task_0001")
    )
    session = await services.sessions.create("acme", "echo", metadata={}, ttl_s=None)
    await services.sessions.turn(RunRequest.turn("acme", session.id, "three"))
    with pytest.raises(RunFailure):
        await invoker.invoke(RunRequest(tenant_id="acme", agent="raises", input="four"))

    found = Scrape(metrics_of(services).render().decode())
    runs = "shipyard_runs_total"
    for execution in ("stateless", "task", "session"):
        labels = {"agent": "echo", "execution": execution, "outcome": "succeeded"}
        assert found[runs, labels] == 1
    assert found[runs, {"agent": "raises", "outcome": "failed"}] == 1
    assert found["shipyard_run_errors_total", {"agent": "raises", "code": "run_failed"}] == 1
    assert found["shipyard_llm_tokens_total", {"tenant": "acme", "model": "scripted:echo"}] > 0
    assert found["shipyard_active_sessions", {}] == 0  # not bound outside a server or worker
    assert services.sessions.active_turns == 0  # every turn that began has ended


async def test_a_tool_name_the_model_made_up_is_not_a_label(services: Services) -> None:
    outcome = await services.invoker.invoke(
        RunRequest(tenant_id="acme", agent="confused", input="go")
    )
    assert outcome.output == "Gave up."

    found = Scrape(metrics_of(services).render().decode())
    tools = {(ls["tool"], ls["kind"]) for ls in found.labels("shipyard_tool_errors_total")}
    assert tools == {("unknown", "unknown_tool"), ("explode", "error")}
    assert found["shipyard_tool_duration_seconds_count", {"agent": "confused"}] == 2
    assert "teleport" not in metrics_of(services).render().decode()
    model_calls = found[
        "shipyard_llm_request_duration_seconds_count", {"model": "scripted:confused"}
    ]
    assert model_calls == 3


async def test_a_tenant_is_shown_its_own_series_only(services: Services) -> None:
    for tenant in ("acme", "globex"):
        await services.invoker.invoke(RunRequest(tenant_id=tenant, agent="echo", input="hi"))
    metrics = metrics_of(services)
    tokens = "shipyard_llm_tokens_total"
    everyone = Scrape(metrics.render().decode())
    acme = Scrape(metrics.render("acme").decode())
    assert {ls["tenant"] for ls in everyone.labels(tokens)} == {"acme", "globex"}
    assert {ls["tenant"] for ls in acme.labels(tokens)} == {"acme"}
    assert acme["shipyard_runs_total", {"agent": "echo"}] == 2  # not per tenant: kept
    assert "globex" not in metrics.render("acme").decode()


async def test_every_metrics_has_its_own_registry(services: Services) -> None:
    await services.invoker.invoke(RunRequest(tenant_id="acme", agent="echo", input="hi"))
    other = Metrics()
    assert Scrape(other.render().decode())["shipyard_runs_total", {}] == 0
    assert Scrape(metrics_of(services).render().decode())["shipyard_runs_total", {}] == 1


async def test_the_metrics_port_serves_without_auth_until_closed() -> None:
    port = free_port()
    metrics = Metrics(port=port)
    metrics.task_finished("echo", "succeeded")
    await metrics.start()
    try:
        async with httpx.AsyncClient() as client:
            reply = await client.get(f"http://127.0.0.1:{port}/metrics")
    finally:
        await metrics.close()
    assert reply.status_code == 200
    found = Scrape(reply.text)
    assert found["shipyard_tasks_finished_total", {"agent": "echo", "status": "succeeded"}] == 1
    again = Metrics(port=port)  # the port was given back
    await again.start()
    await again.close()
