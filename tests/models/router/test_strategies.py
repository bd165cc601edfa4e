"""Each routing strategy, through real runs with scripted candidates (docs/routing.md)."""

from __future__ import annotations

from typing import Any

import pytest

from shipyard import Agent, tool
from shipyard.errors import ConfigError
from shipyard.models.base import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    ToolSpec,
    UserMessage,
)
from shipyard.models.router import Cascade, Learned, Router, RouteScope, Rule, Rules
from shipyard.models.router.strategies import RouteInput
from shipyard.testing import run_agent
from tests.models.router.conftest import Script

STRONG = (10.0, 30.0)
CHEAP = (0.5, 1.5)


def routes(events: list[Any]) -> list[dict[str, Any]]:
    return [e.data for e in events if e.type == "llm.route"]


async def test_rules_route_on_tenant_agent_and_metadata(scripted: Script) -> None:
    strong = scripted("strong", ["strong answer"] * 3, STRONG)
    cheap = scripted("cheap", ["cheap answer"] * 3, CHEAP)
    rules = Rules(
        [
            Rule(model=cheap.model, tenant=["free"]),
            Rule(model=cheap.model, metadata={"tier": "bulk"}),
        ],
        default=strong.model,
    )
    router = Router("tiered", [strong, cheap], rules)
    agent = Agent("helper", model="router:tiered")

    free, events = await run_agent(agent, "hi", routers=[router], tenant_id="free")
    assert free.output == "cheap answer"
    assert routes(events)[0]["chosen"] == cheap.model
    assert routes(events)[0]["reason"] == "rule 0"

    paying, events = await run_agent(agent, "hi", routers=[router], tenant_id="acme")
    assert paying.output == "strong answer"
    assert routes(events)[0]["reason"] == "default"

    bulk, events = await run_agent(
        agent, "hi", routers=[router], tenant_id="acme", metadata={"tier": "bulk"}
    )
    assert bulk.output == "cheap answer"
    assert routes(events)[0]["reason"] == "rule 1"


def test_rules_on_tools_prompt_length_and_agent() -> None:
    rules = Rules(
        [
            Rule(model="openai:gpt-4.1", tools=["search"]),
            Rule(model="openai:gpt-4.1", min_prompt_chars=50),
            Rule(model="openai:gpt-4.1-mini", agent=["triage"]),
        ],
        default="openai:gpt-4.1-nano",
    )
    router = Router("r", ["openai:gpt-4.1", "openai:gpt-4.1-mini", "openai:gpt-4.1-nano"], rules)
    short = ModelRequest(messages=(UserMessage(content="hi"),))
    long = ModelRequest(messages=(UserMessage(content="x" * 60),))
    searching = short.model_copy(update={"tools": (ToolSpec(name="search"),)})

    def pick(req: ModelRequest, agent: str = "a") -> str:
        return rules.decide(router.config, RouteInput(req, RouteScope(agent=agent)), False).chosen

    assert pick(searching) == "openai:gpt-4.1"
    assert pick(long) == "openai:gpt-4.1"
    assert pick(short, "triage") == "openai:gpt-4.1-mini"
    assert pick(short) == "openai:gpt-4.1-nano"


def test_cheaper_only_keeps_to_candidates_cheaper_than_the_pick() -> None:
    rules = Rules(default="openai:gpt-4.1")
    router = Router("r", ["openai:gpt-4.1", "openai:gpt-4.1-mini", "openai:gpt-4.1-nano"], rules)
    call = RouteInput(ModelRequest(messages=(UserMessage(content="hi"),)), RouteScope())
    assert rules.decide(router.config, call, False).chosen == "openai:gpt-4.1"
    cut = rules.decide(router.config, call, True)
    assert cut.chosen == "openai:gpt-4.1-mini"
    assert "cheaper only" in cut.reason
    learned = Learned(threshold=0.0)  # every prompt would go to the strongest
    assert learned.decide(router.config, call, False).chosen == "openai:gpt-4.1"
    assert learned.decide(router.config, call, True).chosen == "openai:gpt-4.1-mini"


@tool
def lookup(city: str) -> str:
    """Look a city up.

    Args:
        city: The city.
    """
    return f"{city}: sunny " + "and warm " * 20


async def test_one_run_plans_on_the_strong_model_and_fills_in_on_the_cheap_one(
    scripted: Script,
) -> None:
    plan = {"tool_calls": [{"name": "lookup", "arguments": {"city": "Oslo"}}]}
    strong = scripted("strong", [plan, "strong should not answer"], STRONG)
    cheap = scripted("cheap", ["cheap should not plan", "Oslo is sunny"], CHEAP)
    rules = Rules([Rule(model=cheap.model, tool_results=True)], default=strong.model)
    router = Router("planfill", [strong, cheap], rules)
    agent = Agent("weather", model="router:planfill", tools=[lookup])
    result, events = await run_agent(agent, "weather in Oslo?", routers=[router])
    assert result.output == "Oslo is sunny"
    assert [r["chosen"] for r in routes(events)] == [strong.model, cheap.model]
    saved = [r["saved_usd"] for r in routes(events)]
    assert saved[0] == 0 and saved[1] > 0  # the strong call saved nothing, the cheap one did


async def test_learned_routes_hard_prompts_to_the_strong_model(scripted: Script) -> None:
    strong = scripted("strong", ["strong"], STRONG)
    cheap = scripted("cheap", ["cheap"], CHEAP)
    learned = Learned(strong_share=0.5)
    router = Router("smart", [strong, cheap], learned)
    agent = Agent("qa", model="router:smart")
    easy = "What is the capital of France?\nA. Paris\nB. Rome\nC. Oslo\nD. Bern\nAnswer:"
    hard = (
        "Statement 1 | Every group of order p^2 is abelian. Statement 2 | If H is a normal "
        "subgroup of G and G/H is cyclic then G is abelian. Compute the index of <p> in S_5 "
        "where p = (1, 2, 5, 4)(2, 3).\nA. True, True\nB. False, False\nC. 8\nD. 24\nAnswer:"
    )
    weights = learned.model
    assert weights.score(hard) > learned.cutoff > weights.score(easy)
    out, events = await run_agent(agent, hard, routers=[router])
    assert out.output == "strong"
    assert routes(events)[0]["score"] == pytest.approx(weights.score(hard), abs=1e-3)
    out, events = await run_agent(agent, easy, routers=[router])
    assert out.output == "cheap"


def test_learned_threshold_from_a_target_share_or_quality() -> None:
    many = Learned(strong_share=0.6).cutoff
    few = Learned(strong_share=0.1).cutoff
    assert few > many  # fewer strong calls: a higher bar
    assert Learned(quality=0.95).cutoff < Learned(quality=0.5).cutoff
    assert Learned(threshold=0.42).cutoff == 0.42


async def test_cascade_escalates_a_refusal_and_a_bad_schema(scripted: Script) -> None:
    cheap = scripted("cheap", ["I'm sorry, I can't help with that."], CHEAP)
    strong = scripted("strong", ["Here is the answer."], STRONG)
    router = Router("casc", [cheap, strong], Cascade())
    agent = Agent("qa", model="router:casc")
    result, events = await run_agent(agent, "help me", routers=[router])
    assert result.output == "Here is the answer."
    route = routes(events)[0]
    assert route["chosen"] == strong.model
    assert "escalated" in route["reason"] and "refusal" in route["reason"]
    assert result.usage.cost_usd > 0  # both calls are paid for
    cheap_ok = scripted("cheap2", ['{"city": "Oslo"}'], CHEAP)
    router = Router("casc2", [cheap_ok, strong], Cascade())
    out, events = await run_agent(Agent("qa", model="router:casc2"), "x", routers=[router])
    assert out.output == '{"city": "Oslo"}'
    assert routes(events)[0]["chosen"] == cheap_ok.model


def test_cascade_checks_the_response_schema() -> None:
    from shipyard.models.router import schema_check

    schema = {"type": "object", "required": ["city"]}
    request = ModelRequest(messages=(UserMessage(content="x"),), response_schema=schema)
    bad = ModelResponse(message=AssistantMessage(content='{"town": 1}'))
    good = ModelResponse(message=AssistantMessage(content='{"city": "Oslo"}'))
    assert schema_check(request, bad) is not None
    assert schema_check(request, good) is None
    assert schema_check(request, ModelResponse(message=AssistantMessage(content="no"))) is not None


def test_a_router_is_checked_when_it_is_made() -> None:
    with pytest.raises(ConfigError, match="not one of its candidates"):
        Router("r", ["openai:gpt-4.1"], Rules(default="openai:gpt-4o"))
    with pytest.raises(ConfigError, match="at least one candidate"):
        Router("r", [])
    with pytest.raises(ConfigError, match="same model"):
        Router("r", ["openai:gpt-4.1", "openai:gpt-4.1"])


async def test_an_unknown_router_reference_fails_clearly() -> None:
    from shipyard import App
    from shipyard.errors import RunFailure

    with pytest.raises(ConfigError, match="agent a: no router named 'nope'"):
        App([Agent("a", model="router:nope")])
    with pytest.raises(RunFailure, match="no router named 'nope'"):
        await run_agent(Agent("a", model="router:nope"), "hi")


class Degrade:
    """A run hook standing where the cost governor's ``degrade`` policy will: it tells the
    run's routers to keep to cheaper candidates."""

    async def before(self, ctx: Any) -> None:
        from shipyard.models.router import route_scope

        scope = route_scope.get()
        assert scope is not None
        scope.cheaper_only = True

    async def after(self, ctx: Any, ended: object) -> None:
        return None


async def test_a_run_told_to_degrade_routes_to_a_cheaper_candidate(scripted: Script) -> None:
    strong = scripted("strong", ["strong"], STRONG)
    cheap = scripted("cheap", ["cheap"], CHEAP)
    router = Router("deg", [strong, cheap], Rules(default=strong.model))
    agent = Agent("qa", model="router:deg")
    out, events = await run_agent(agent, "hi", routers=[router], run_hooks=[Degrade()])
    assert out.output == "cheap"
    assert routes(events)[0]["reason"] == "default, cheaper only"
    out, _ = await run_agent(agent, "hi", routers=[router])
    assert out.output == "strong"


async def test_the_default_model_can_be_a_router(scripted: Script) -> None:
    from shipyard.config import load_settings

    assert load_settings(model="router:smart").model == "router:smart"
    cheap = scripted("cheap", ["cheap"], CHEAP)
    router = Router("smart", [cheap], Rules())
    out, events = await run_agent(Agent("qa"), "hi", routers=[router], default_model="router:smart")
    assert out.output == "cheap" and routes(events)[0]["router"] == "smart"


def test_a_routed_call_is_priced_as_its_strongest_candidate_before_it_is_made() -> None:
    """The budget reserves a call's worst case from its model's price (``models.spend``): for
    ``router:<name>`` that is the strongest candidate's."""
    from shipyard.app import price_routers
    from shipyard.models.prices import price_of

    router = Router("priced-as-strong", ["openai:gpt-4.1", "openai:gpt-4.1-nano"], Rules([]))
    assert price_of("router:priced-as-strong") is None
    price_routers([router])
    assert price_of("router:priced-as-strong") == price_of("openai:gpt-4.1")
