"""The model cache: a repeated call is answered from the state store (SQLite and Redis) without
calling the model, as an ``llm.cached`` event and metrics with what it saved; never across
tenants; never a call that offers a tool not marked pure; a hit spends no budget."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import shipyard
from shipyard import Agent, RunContext, agent, tool
from shipyard.agents.context import RunRequest
from shipyard.config import load_settings
from shipyard.models import prices
from shipyard.models.base import ModelRequest, ModelResponse, UserMessage
from shipyard.models.cache import CachedModel, CacheScope, cache_scope
from shipyard.models.scripted import ScriptedModel
from shipyard.runtime.invoke import RunOutcome
from shipyard.runtime.services import Services
from shipyard.stores.records.policy import Budgets, TenantPolicy
from shipyard.stores.state.base import StateStore
from shipyard.telemetry.events import Event
from shipyard.telemetry.metrics import Metrics
from tests.runtime.test_task_handover import started
from tests.stores.state.conftest import store

__all__ = ["store"]

ECHO = ScriptedModel(echo=True, name="scripted:cached")  # $0.001 a token
CALC = ScriptedModel(
    [{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "It is 5."],
    name="scripted:cached",
)
CLOCK = ScriptedModel(
    [{"tool_calls": [{"name": "now", "arguments": {}}]}, "It is late."], name="scripted:cached"
)


@tool(pure=True)
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def now() -> str:
    """The time (not pure: it changes)."""
    return "23:59"


@agent("direct")
async def direct(ctx: RunContext, input: object) -> str:
    """One model call with the input, no tools."""
    answer = await ctx.model(ECHO).complete(
        ModelRequest(messages=(UserMessage(content=str(input)),))
    )
    return answer.message.content or ""


APP = shipyard.App(
    agents=[
        direct,
        Agent(name="calc", model=CALC, tools=[add]),
        Agent(name="clock", model=CLOCK, tools=[now]),
    ]
)


@pytest.fixture(autouse=True)
def priced() -> Iterator[None]:
    prices.register_price("scripted:cached", 1000, 1000)
    yield
    prices.PRICES.pop("scripted:cached", None)


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    settings = load_settings(home=tmp_path, log_events=False, model_cache=True, tenant_cache_s=0)
    async with started(settings, APP) as running:
        yield running


async def run(
    services: Services, tenant: str, agent_name: str, text: str, events: list[Event]
) -> RunOutcome:
    request = RunRequest(tenant_id=tenant, agent=agent_name, input=text)
    return await services.invoker.invoke(request, sinks=[events.append])


async def test_a_repeated_call_is_served_from_the_cache(services: Services) -> None:
    first: list[Event] = []
    again: list[Event] = []
    before = len(ECHO.requests)
    answer = await run(services, "acme", "direct", "hello there", first)
    repeat = await run(services, "acme", "direct", "hello there", again)
    assert len(ECHO.requests) - before == 1  # the second run never called the model
    assert repeat.output == answer.output == "echo: hello there"
    assert answer.usage.cost_usd > 0 and repeat.usage.cost_usd == 0.0
    cached = [e for e in again if e.type == "llm.cached"]
    assert len(cached) == 1 and not [e for e in first if e.type == "llm.cached"]
    assert cached[0].data["saved_usd"] == pytest.approx(answer.usage.cost_usd)
    assert cached[0].data["saved_tokens"] == 2 + 3  # "hello there", "echo: hello there"
    await run(services, "acme", "direct", "something else", [])
    assert len(ECHO.requests) - before == 2  # another input: another call


async def test_tenants_never_share_the_cache(services: Services) -> None:
    before = len(ECHO.requests)
    await run(services, "acme", "direct", "same words", [])
    events: list[Event] = []
    await run(services, "globex", "direct", "same words", events)
    assert len(ECHO.requests) - before == 2
    assert not [e for e in events if e.type == "llm.cached"]


async def test_only_calls_offering_pure_tools_are_cached(services: Services) -> None:
    before = len(CALC.requests)
    for _ in range(2):
        assert (await run(services, "acme", "calc", "2+3?", [])).output == "It is 5."
    assert len(CALC.requests) - before == 2  # two steps, once: the second run was all hits
    before = len(CLOCK.requests)
    for _ in range(2):
        assert (await run(services, "acme", "clock", "time?", [])).output == "It is late."
    assert len(CLOCK.requests) - before == 4  # `now` is not pure: never cached


async def test_a_hit_spends_no_budget(services: Services) -> None:
    policy = TenantPolicy(budgets=Budgets(usd_per_day=10.0, reserve_usd=0.01))
    await services.tenants.put("thrifty", policy, changed_by="test")
    await run(services, "thrifty", "direct", "once", [])
    assert services.governor is not None
    spent = (await services.governor.standing("thrifty", policy.budgets))[0].spent
    await run(services, "thrifty", "direct", "once", [])
    assert (await services.governor.standing("thrifty", policy.budgets))[0].spent == spent > 0


async def test_the_cache_on_each_state_store(store: StateStore) -> None:
    model = CachedModel(ScriptedModel(echo=True, name="scripted:cached"), store, ttl_s=60)
    events: list[str] = []
    request = ModelRequest(messages=(UserMessage(content="hi"),))
    token = cache_scope.set(CacheScope("acme", frozenset(), lambda kind, **_: events.append(kind)))
    try:
        answers = [[i async for i in model.stream(request)][-1] for _ in range(2)]
    finally:
        cache_scope.reset(token)
    assert all(isinstance(a, ModelResponse) for a in answers)
    assert answers[0].message == answers[1].message
    assert events == ["llm.cached"]


async def test_hits_and_savings_are_metrics(services: Services) -> None:
    metrics = Metrics()
    events: list[Event] = []
    for _ in range(3):
        await run(services, "acme", "direct", "count me", events)
    for event in events:
        metrics.sink(event)
    labels = {"model": "scripted:cached", "tenant": "acme", "cache": "exact"}
    hits = metrics.registry.get_sample_value("shipyard_llm_cache_hits_total", labels)
    saved = metrics.registry.get_sample_value("shipyard_llm_cache_saved_usd_total", labels)
    assert hits == 2
    assert saved == pytest.approx(2 * (2 + 3) * 0.001)  # "count me" → "echo: count me"
