"""The egress policy in real runs, wired by the composition root: ``ctx.http`` under the
server's, the agent's and the tenant's rules; every request (each redirect hop) an
``egress.request`` event on the tool's span, in the records, the metrics and the trace.

Tests allow the local receiver explicitly (``SHIPYARD_TOOL_ALLOW=127.0.0.1:<port>``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard import Agent, EgressRules, RunContext, tool
from shipyard.agents.context import RunRequest
from shipyard.app import App, build_services
from shipyard.config import load_settings
from shipyard.models.scripted import ScriptedModel
from shipyard.runtime.services import Services
from shipyard.stores.records.policy import Egress, TenantPolicy
from shipyard.telemetry.events import Event
from shipyard.telemetry.tracing import spans_of
from tests.guard.receivers import Receiver, receiving

TENANT = "acme"


@tool
async def fetch(url: str, ctx: RunContext, method: str = "GET") -> str:
    """Fetch a URL.

    Args:
        url: What to fetch.
        method: The HTTP method.
    """
    reply = await ctx.http.request(method, url, follow_redirects=True)
    return f"{reply.status_code} {reply.text}"


def calls(*urls: str, method: str = "GET") -> list[Any]:
    tool_calls = [{"name": "fetch", "arguments": {"url": u, "method": method}} for u in urls]
    return [{"tool_calls": tool_calls}, "done"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as a:
        yield a


@pytest.fixture
async def started(tmp_path: Path, receiver: Receiver) -> AsyncIterator[Any]:
    """``started(agent, **settings)``: the composition root's services for one agent."""
    built: list[Services] = []

    async def start(agent: Agent, **settings: Any) -> Services:
        services = build_services(
            App(agents=[agent]),
            load_settings(
                home=tmp_path,
                tool_allow=f"127.0.0.1:{receiver.port}",
                tenant_cache_s=0,
                log_events=False,
                **settings,
            ),
        )
        await services.records.migrate()
        await services.start()
        built.append(services)
        return services

    yield start
    for services in built:
        await services.close()


async def run(services: Services, agent: str) -> list[Event]:
    outcome = await services.invoker.invoke(RunRequest(tenant_id=TENANT, agent=agent, input="go"))
    return await services.records.list_events(TENANT, outcome.run_id)


def egress(events: list[Event]) -> list[dict[str, Any]]:
    return [e.data for e in events if e.type == "egress.request"]


async def test_each_request_is_an_event_on_its_tools_span_in_metrics_and_trace(
    started: Any, receiver: Receiver
) -> None:
    chain = receiver.hop(receiver.url("/ok"))
    unlisted = receiver.url("/ok", host="localhost")  # the address is allowed; the name is not
    model = ScriptedModel(calls(chain, unlisted))
    web = Agent(name="web", model=model, tools=[fetch], egress=EgressRules(hosts=["127.0.0.1"]))
    services = await started(web)
    events = await run(services, "web")

    records = egress(events)
    assert len(records) == 3
    [hop] = [d for d in records if d.get("status") == 302]
    [ok] = [d for d in records if d.get("status") == 200]
    [denied] = [d for d in records if not d["allowed"]]
    assert hop["allowed"] is True
    assert ok == {
        "method": "GET", "scheme": "http", "host": "127.0.0.1", "port": receiver.port,
        "allowed": True, "status": 200, "bytes": 2, "latency_ms": ok["latency_ms"],
    }  # fmt: skip
    assert denied["allowed"] is False and denied["rule"] == "agent.hosts"
    assert denied["host"] == "localhost" and "agent 'web'" in denied["reason"]
    assert receiver.seen == [("GET", "/to"), ("GET", "/ok")]  # the denied one never left

    tool_spans = {e.data["id"]: e.span_id for e in events if e.type == "tool.call"}
    spans = {e.span_id for e in events if e.type == "egress.request"}
    assert spans == set(tool_spans.values())  # each on the span of the tool that sent it
    results = [e.data for e in events if e.type == "tool.result"]
    assert sorted(r["ok"] for r in results) == [False, True]
    assert any("rule: agent.hosts" in r.get("error", "") for r in results)

    metrics = services.observability.metrics
    assert metrics is not None
    text = metrics.render().decode()
    allowed = 'agent="web",method="GET",outcome="allowed",source="tool"'
    assert f"shipyard_egress_requests_total{{{allowed}}} 2.0" in text
    assert 'shipyard_egress_denials_total{rule="agent.hosts",source="tool"} 1.0' in text

    rows = spans_of(await services.records.trace_events(TENANT, events[0].trace_id))
    marks = [ev for row in rows if row["name"] == "execute_tool fetch" for ev in row["events"]]
    assert sorted(m["attributes"].get("http.response.status_code", 0) for m in marks) == [
        0, 200, 302,
    ]  # fmt: skip
    assert {m["name"] for m in marks} == {"shipyard.egress.request"}
    assert any(m["attributes"].get("shipyard.egress.rule") == "agent.hosts" for m in marks)


async def test_the_tenant_policy_narrows_the_agent(started: Any, receiver: Receiver) -> None:
    model = ScriptedModel([*calls(receiver.url()), *calls(receiver.url())])
    web = Agent(name="web", model=model, tools=[fetch])
    services = await started(web)
    narrow = TenantPolicy(egress=Egress(allow=["*.example.test"]))
    await services.tenants.put(TENANT, narrow, changed_by="test")
    [denied] = egress(await run(services, "web"))
    assert (denied["allowed"], denied["rule"]) == (False, "tenant.hosts")
    assert "tenant 'acme'" in denied["reason"] and "*.example.test" in denied["reason"]

    wider = TenantPolicy(egress=Egress(allow=["*.example.test", "127.0.0.1"]))
    await services.tenants.put(TENANT, wider, changed_by="test")
    [allowed] = egress(await run(services, "web"))
    assert (allowed["allowed"], allowed["status"]) == (True, 200)


async def test_the_server_default_applies_to_every_agent(started: Any, receiver: Receiver) -> None:
    model = ScriptedModel(calls(receiver.url(), method="POST"))
    services = await started(Agent(name="web", model=model, tools=[fetch]), egress_methods="GET")
    [denied] = egress(await run(services, "web"))
    assert (denied["allowed"], denied["rule"]) == (False, "server.methods")
    assert denied["method"] == "POST"
    assert "SHIPYARD_EGRESS_" in denied["reason"]
    assert receiver.seen == []


async def test_an_answer_over_the_cap_is_cut_off(started: Any, receiver: Receiver) -> None:
    model = ScriptedModel(calls(receiver.url("/stream?n=100000")))
    services = await started(
        Agent(name="web", model=model, tools=[fetch]), egress_max_response_bytes=10_000
    )
    [cut] = egress(await run(services, "web"))
    assert (cut["allowed"], cut["rule"]) == (False, "server.max_response_bytes")
    assert 10_000 < cut["bytes"] < 100_000


def test_agents_rules_are_checked_when_the_agent_is_defined() -> None:
    from shipyard.errors import ConfigError

    for bad in ({"hosts": ["a b"]}, {"methods": ["BREW"]}, {"ports": [0]}, {"schemes": ["ftp"]}):
        with pytest.raises(ConfigError, match="egress"):
            Agent(name="web", egress=EgressRules(**bad))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("egress_hosts", "a b"),
        ("egress_schemes", "ftp"),
        ("egress_ports", "http"),
        ("egress_methods", "BREW"),
        ("webhook_hosts", "*.exa mple.com"),
    ],
)
def test_a_bad_egress_setting_refuses_to_load_naming_the_knob(knob: str, value: str) -> None:
    from shipyard.errors import ConfigError

    with pytest.raises(ConfigError, match=f"SHIPYARD_{knob.upper()}"):
        load_settings(**{knob: value})


async def test_a_function_agents_rules_and_its_own_span(receiver: Receiver) -> None:
    """``@agent(egress=...)``: a function agent's requests pass its rules, and their events sit
    on the run's span (there is no tool span)."""
    from shipyard import agent
    from shipyard.guard.egress import EgressPolicy
    from shipyard.runtime.egress import ToolEgress
    from shipyard.testing import run_agent

    @agent("getter", egress=EgressRules(methods=["GET"]))
    async def getter(ctx: RunContext, input: Any) -> str:
        reply = await ctx.http.get(receiver.url())
        try:
            await ctx.http.delete(receiver.url())
        except Exception as exc:
            return f"{reply.text} then {type(exc).__name__}"
        return "deleted"

    egress_ = ToolEgress(EgressPolicy.from_setting(f"127.0.0.1:{receiver.port}"))
    try:
        result, events = await run_agent(getter, "go", egress=egress_)
    finally:
        await egress_.aclose()
    assert result.output == "ok then EgressDenied"
    run_span = events[0].span_id
    got, deleted = [e for e in events if e.type == "egress.request"]
    assert got.span_id == deleted.span_id == run_span and got.parent_span_id is None
    assert (deleted.data["allowed"], deleted.data["rule"]) == (False, "agent.methods")
    assert receiver.seen == [("GET", "/ok")]


async def test_a_tenant_pattern_the_rules_cannot_read_is_refused_when_set(
    started: Any,
) -> None:
    from shipyard.errors import InvalidInput

    services = await started(Agent(name="web", model="scripted:echo"))
    bad = TenantPolicy(egress=Egress(allow=["*.example.test", "two words"]))
    with pytest.raises(InvalidInput, match=r"policy\.egress\.allow: egress host 'two words'"):
        await services.tenants.put(TENANT, bad, changed_by="test")
