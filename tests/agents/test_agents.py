"""Plain async functions as agents, and what an ``Agent`` refuses at definition time."""

from __future__ import annotations

import pytest

import shipyard
from shipyard import Agent, RunContext, UserMessage, agent, tool
from shipyard.errors import ConfigError, RunFailure
from shipyard.testing import run_agent


async def test_a_function_agent_sees_the_input_and_can_emit_events() -> None:
    @agent("shout")
    async def shout(ctx: RunContext, input: object) -> str:
        """Shouts back."""
        ctx.emit("guard.flag", guard="demo", action="allow", reason="testing")
        text = input if isinstance(input, str) else input[-1].content  # type: ignore[index]
        return str(text).upper()

    assert shout.description == "Shouts back."
    result, events = await run_agent(shout, "hey")
    assert result.output == "HEY"
    assert [e.type for e in events] == ["run.started", "guard.flag", "run.completed"]
    result, _ = await run_agent(shout, [UserMessage(content="list input")])
    assert result.output == "LIST INPUT"


async def test_a_function_agent_must_return_text() -> None:
    @agent("wrong")
    async def wrong(ctx: RunContext, input: object) -> str:
        return 42  # type: ignore[return-value]

    with pytest.raises(RunFailure, match="returned int, not str"):
        await run_agent(wrong, "x")


def test_definitions_are_checked() -> None:
    with pytest.raises(ConfigError, match="agent name"):
        Agent(name="has space")
    with pytest.raises(ConfigError, match="max_steps"):
        Agent(name="a", max_steps=0)

    @tool
    def same() -> str:
        """One."""
        return "1"

    with pytest.raises(ConfigError, match="share a name"):
        Agent(name="a", tools=[same, same])
    with pytest.raises(ConfigError, match="needs a type hint"):
        tool(lambda x: x)
    with pytest.raises(ConfigError, match="two agents are named"):
        shipyard.App(agents=[Agent(name="a"), Agent(name="a")])
    with pytest.raises(ConfigError, match="is not an agent"):
        shipyard.App(agents=["not an agent"])  # type: ignore[list-item]


@pytest.mark.parametrize("reference", ["gpt-4.1-mini", "opnai:gpt-4.1-mini", "openai:"])
def test_a_bad_model_reference_fails_at_definition(reference: str) -> None:
    with pytest.raises(ConfigError, match=r"agent a: .*model"):
        Agent(name="a", model=reference)


def test_a_good_model_reference_is_accepted_without_building_the_model() -> None:
    assert Agent(name="a", model="openai:gpt-4.1-mini?temperature=0").model is not None


def test_tool_specs_are_built_once() -> None:
    @tool
    async def search(query: str) -> str:
        """Search."""
        return query

    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    assert search.spec is search.spec
    assert (search.is_async, add.is_async) == (True, False)
    assistant = Agent(name="a", tools=[search, add])
    assert assistant.tool_specs is assistant.tool_specs
    assert assistant.tool_specs == (search.spec, add.spec)
