"""Agents for the end-to-end tests: each exercises one outcome of a run."""

from __future__ import annotations

import asyncio

import shipyard
from shipyard import RunContext, agent, tool
from shipyard.testing import ScriptedModel


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@agent("sleepy")
async def sleepy(ctx: RunContext, input: object) -> str:
    """Takes longer than the run timeout the tests configure."""
    await asyncio.sleep(30)
    return "woke up"


@agent("historian")
async def historian(ctx: RunContext, input: object) -> str:
    """Says how many messages it was given: proves a session turn sees the history."""
    count = len(input) if isinstance(input, list) else 1
    return f"{count} messages so far"


@agent("crashy")
async def crashy(ctx: RunContext, input: object) -> str:
    """An agent with a bug."""
    raise ValueError("secret internal detail")


@agent("unstorable")
async def unstorable(ctx: RunContext, input: object) -> str:
    """Answers text no store can hold as is (a lone surrogate): served and stored with U+FFFD."""
    return "half of a pair: \ud800"


@agent("unaccountable")
async def unaccountable(ctx: RunContext, input: object) -> str:
    """Breaks its run's accounting (its usage is no ``Usage``): an error no route expects."""
    ctx.usage = None  # type: ignore[assignment]
    return "done"


app = shipyard.App(
    agents=[
        shipyard.Agent(name="echo", model="scripted:echo", description="Echoes."),
        shipyard.Agent(name="slow_echo", model="scripted:echo?delay_ms=300"),
        shipyard.Agent(name="slower_echo", model="scripted:echo?delay_ms=1000"),
        shipyard.Agent(
            name="calc",
            model=ScriptedModel(
                [{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "It is 5."]
            ),
            tools=[add],
        ),
        shipyard.Agent(name="broken", model=ScriptedModel([{"error": "provider is down"}])),
        shipyard.Agent(name="garbled", model=ScriptedModel([{"error": "provider says \udfff"}])),
        sleepy,
        crashy,
        historian,
        unstorable,
        unaccountable,
    ]
)
