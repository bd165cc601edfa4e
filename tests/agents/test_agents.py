"""Plain async functions as agents, and what an ``Agent`` refuses at definition time."""

from __future__ import annotations

import pytest

import shipyard
from shipyard import Agent, RunContext, UserMessage, agent, tool
from shipyard.errors import ConfigError
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
    assert [e.type for e in events] == ["guard.flag"]
    result, _ = await run_agent(shout, [UserMessage(content="list input")])
    assert result.output == "LIST INPUT"


async def test_a_function_agent_must_return_text() -> None:
    @agent("wrong")
    async def wrong(ctx: RunContext, input: object) -> str:
        return 42  # type: ignore[return-value]

    with pytest.raises(ConfigError, match="returned int, not str"):
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
