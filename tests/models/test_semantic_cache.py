"""The semantic cache (opt-in): a call that means the same as an earlier one — by the offline
WordLlama embedder's similarity — is answered from the state store without calling the model;
an unrelated question, another tenant, a call with tools or a conversation never is; an answer
lives ``ttl_s`` (a clock the test moves); hits and misses are events and metrics; off by
default."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import shipyard
from shipyard import Agent, RunContext, agent, tool
from shipyard.agents.context import RunRequest
from shipyard.config import load_settings
from shipyard.models import prices
from shipyard.models.base import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    SystemMessage,
    ToolSpec,
    UserMessage,
)
from shipyard.models.cache import CacheScope, cache_scope
from shipyard.models.embedding import HashEmbedder
from shipyard.models.router import Candidate, Router, Rules
from shipyard.models.scripted import ScriptedModel
from shipyard.models.semantic_cache import SemanticCache, SemanticSettings, question
from shipyard.runtime.invoke import RunOutcome
from shipyard.runtime.services import Services
from shipyard.stores.state.base import StateStore
from shipyard.telemetry.events import Event
from shipyard.telemetry.metrics import Metrics
from tests.runtime.test_task_handover import started
from tests.stores.state.conftest import store

__all__ = ["store"]

ECHO = ScriptedModel(echo=True, name="scripted:semantic")  # $0.001 a token
CALC = ScriptedModel(
    [{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "It is 5."],
    name="scripted:semantic",
)
FRANCE = "What is the capital of France?"
PARAPHRASE = "What's the capital city of France?"  # WordLlama: 0.918 to FRANCE
UNRELATED = "What is the capital of Germany?"  # 0.439


@tool(pure=True)
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@agent("direct")
async def direct(ctx: RunContext, input: object) -> str:
    """One model call: a system message and the input, no tools."""
    messages = (SystemMessage(content="Answer briefly."), UserMessage(content=str(input)))
    answer = await ctx.model(ECHO).complete(ModelRequest(messages=messages))
    return answer.message.content or ""


ROUTER = Router(
    "smart",
    [Candidate("scripted:echo", price=(1, 1)), Candidate("scripted:echo?delay_ms=0", price=(2, 2))],
    Rules(),
)
APP = shipyard.App(
    agents=[
        direct,
        Agent(name="calc", model=CALC, tools=[add]),
        Agent(name="routed", model="router:smart"),
    ],
    routers=[ROUTER],
)


@pytest.fixture(autouse=True)
def priced() -> Iterator[None]:
    prices.register_price("scripted:semantic", 1000, 1000)
    yield
    prices.PRICES.pop("scripted:semantic", None)


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    settings = load_settings(home=tmp_path, log_events=False, semantic_cache=True)
    async with started(settings, APP) as running:
        yield running


async def run(
    services: Services, tenant: str, text: str, events: list[Event], name: str = "direct"
) -> RunOutcome:
    request = RunRequest(tenant_id=tenant, agent=name, input=text)
    return await services.invoker.invoke(request, sinks=[events.append])


def of(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e.type == kind]


async def test_a_paraphrase_is_answered_from_the_cache(services: Services) -> None:
    first: list[Event] = []
    again: list[Event] = []
    before = len(ECHO.requests)
    answer = await run(services, "acme", FRANCE, first)
    repeat = await run(services, "acme", PARAPHRASE, again)
    assert len(ECHO.requests) - before == 1  # the paraphrase never reached the model
    assert repeat.output == answer.output == f"echo: {FRANCE}"
    assert repeat.usage.cost_usd == 0.0 < answer.usage.cost_usd
    [hit] = of(again, "llm.cached")
    assert hit.data["cache"] == "semantic" and 0.9 <= hit.data["similarity"] < 1
    assert hit.data["saved_usd"] == pytest.approx(answer.usage.cost_usd)
    [miss] = of(first, "llm.cache_miss")
    assert miss.data["cache"] == "semantic" and miss.data["similarity"] is None  # nothing kept


async def test_an_unrelated_question_misses(services: Services) -> None:
    before = len(ECHO.requests)
    await run(services, "acme", FRANCE, [])
    events: list[Event] = []
    assert (await run(services, "acme", UNRELATED, events)).output == f"echo: {UNRELATED}"
    assert len(ECHO.requests) - before == 2
    [miss] = of(events, "llm.cache_miss")
    assert miss.data["similarity"] < 0.9 and not of(events, "llm.cached")


async def test_another_tenant_never_hits(services: Services) -> None:
    before = len(ECHO.requests)
    await run(services, "acme", FRANCE, [])
    events: list[Event] = []
    assert (await run(services, "globex", FRANCE, events)).output == f"echo: {FRANCE}"
    assert len(ECHO.requests) - before == 2
    assert not of(events, "llm.cached")
    assert of(events, "llm.cache_miss")[0].data["similarity"] is None  # saw none of acme's


async def test_a_hit_in_front_of_a_router_calls_no_candidate(services: Services) -> None:
    first: list[Event] = []
    again: list[Event] = []
    answer = await run(services, "acme", FRANCE, first, "routed")
    repeat = await run(services, "acme", PARAPHRASE, again, "routed")
    assert repeat.output == answer.output == f"echo: {FRANCE}"
    assert of(first, "llm.route") and of(again, "llm.cached") and not of(again, "llm.route")


async def test_calls_with_tools_are_never_served(services: Services) -> None:
    """Even a pure tool: the semantic cache takes single-turn calls without tools only."""
    before = len(CALC.requests)
    events: list[Event] = []
    for _ in range(2):
        assert (await run(services, "acme", "2+3?", events, "calc")).output == "It is 5."
    assert len(CALC.requests) - before == 4
    assert not of(events, "llm.cached") and not of(events, "llm.cache_miss")


async def test_hits_and_misses_are_metrics(services: Services) -> None:
    metrics = Metrics()
    events: list[Event] = []
    outcomes = [
        await run(services, "acme", text, events)
        for text in (FRANCE, PARAPHRASE, FRANCE, UNRELATED)
    ]
    for event in events:
        metrics.sink(event)
    labels = {"model": "scripted:semantic", "tenant": "acme", "cache": "semantic"}
    value = metrics.registry.get_sample_value
    assert value("shipyard_llm_cache_hits_total", labels) == 2
    assert value("shipyard_llm_cache_misses_total", labels) == 2
    saved = value("shipyard_llm_cache_saved_usd_total", labels)
    assert saved == pytest.approx(2 * outcomes[0].usage.cost_usd) and saved > 0


async def test_off_by_default(tmp_path: Path) -> None:
    async with started(load_settings(home=tmp_path, log_events=False), APP) as services:
        before = len(ECHO.requests)
        events: list[Event] = []
        for _ in range(2):
            await run(services, "acme", FRANCE, events)
        assert len(ECHO.requests) - before == 2
        assert not of(events, "llm.cached") and not of(events, "llm.cache_miss")


def test_only_single_turn_calls_without_tools_have_a_question() -> None:
    system, user = SystemMessage(content="Be brief."), UserMessage(content="hi")
    assert question(ModelRequest(messages=(system, user))) == "hi"
    assert question(ModelRequest(messages=(user, AssistantMessage(content="a"), user))) is None
    assert question(ModelRequest(messages=(user,), tools=(ToolSpec(name="add"),))) is None
    assert question(ModelRequest(messages=(system,))) is None


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_the_cache_on_each_state_store_and_its_ttl(store: StateStore) -> None:
    """The test embedder (a hashed bag of words): the same words in another order and case
    are the same question. An answer is served ``ttl_s``, then no more."""
    clock = Clock()
    settings = SemanticSettings(threshold=0.9, ttl_s=60.0, entries=8)
    model = ScriptedModel(echo=True, name="scripted:semantic")
    cached = SemanticCache(model, store, HashEmbedder(), settings, clock)
    events: list[str] = []

    async def ask(text: str, tenant: str = "acme") -> str:
        emit = lambda kind, **_: events.append(kind)  # noqa: E731
        token = cache_scope.set(CacheScope(tenant, frozenset(), emit))
        try:
            request = ModelRequest(messages=(UserMessage(content=text),))
            answer = [item async for item in cached.stream(request)][-1]
        finally:
            cache_scope.reset(token)
        assert isinstance(answer, ModelResponse)
        return answer.message.content or ""

    assert await ask("reset my password please") == "echo: reset my password please"
    clock.now += 59  # within the TTL, and in the next window
    assert await ask("Please reset my password") == "echo: reset my password please"
    assert await ask("reset my password please", "globex") == "echo: reset my password please"
    assert len(model.requests) == 2  # globex asked the model
    clock.now += 2  # 61 s after the answer: expired
    assert await ask("Please reset my password") == "echo: Please reset my password"
    assert events == ["llm.cache_miss", "llm.cached", "llm.cache_miss", "llm.cache_miss"]
