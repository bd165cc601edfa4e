"""The tool-calling loop, driven by the scripted model."""

from __future__ import annotations

import asyncio
import json

import pytest

from shipyard import Agent, ToolMessage, tool
from shipyard.errors import MaxStepsExceeded, ModelError
from shipyard.testing import ScriptedModel, run_agent


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


def kinds(events: list) -> list[str]:
    return [e.type for e in events if e.type != "llm.delta"]


def tool_messages(model: ScriptedModel, request_no: int) -> list[ToolMessage]:
    return [m for m in model.requests[request_no].messages if isinstance(m, ToolMessage)]


async def test_multi_step_tool_use_feeds_results_back() -> None:
    model = ScriptedModel(
        [
            {"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]},
            {"tool_calls": [{"name": "add", "arguments": {"a": 5, "b": 10}}]},
            "The sum is 15.",
        ]
    )
    agent = Agent(name="math", instructions="Do sums.", model=model, tools=[add])
    result, events = await run_agent(agent, "2+3, then +10")

    assert result.output == "The sum is 15."
    assert kinds(events) == [
        "run.started",
        "llm.request", "llm.response", "tool.call", "tool.result",
        "llm.request", "llm.response", "tool.call", "tool.result",
        "llm.request", "llm.response",
        "run.completed",
    ]  # fmt: skip
    assert [m.content for m in tool_messages(model, 1)] == ["5"]
    assert [m.content for m in tool_messages(model, 2)] == ["5", "15"]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0


async def test_independent_tool_calls_run_concurrently() -> None:
    barrier = asyncio.Barrier(2)

    @tool(timeout_s=5)
    async def meet(who: str) -> str:
        """Wait until both calls are in flight; sequential execution would never get past here."""
        await barrier.wait()
        return f"met {who}"

    model = ScriptedModel(
        [
            {
                "tool_calls": [
                    {"name": "meet", "arguments": {"who": "a"}},
                    {"name": "meet", "arguments": {"who": "b"}},
                ]
            },
            "done",
        ]
    )  # fmt: skip
    result, events = await run_agent(Agent(name="pair", model=model, tools=[meet]), "go")

    assert result.output == "done"
    outcomes = [e.data for e in events if e.type == "tool.result"]
    assert [o["ok"] for o in outcomes] == [True, True]
    assert sorted(m.content for m in tool_messages(model, 1)) == ["met a", "met b"]


async def test_tool_error_becomes_a_result_and_the_run_goes_on() -> None:
    @tool
    def explode(reason: str) -> str:
        """Always fails."""
        raise RuntimeError(reason)

    model = ScriptedModel(
        [{"tool_calls": [{"name": "explode", "arguments": {"reason": "disk full"}}]}, "sorry"]
    )
    result, events = await run_agent(Agent(name="a", model=model, tools=[explode]), "x")

    assert result.output == "sorry"
    failure = next(e.data for e in events if e.type == "tool.result")
    assert failure["ok"] is False and failure["error_kind"] == "error"
    assert "disk full" in tool_messages(model, 1)[0].content


async def test_tool_timeout_becomes_a_result() -> None:
    @tool(timeout_s=0.05)
    async def hang() -> str:
        """Never returns."""
        await asyncio.Event().wait()
        return "unreachable"

    model = ScriptedModel([{"tool_calls": [{"name": "hang"}]}, "gave up"])
    result, events = await run_agent(Agent(name="a", model=model, tools=[hang]), "x")

    assert result.output == "gave up"
    failure = next(e.data for e in events if e.type == "tool.result")
    assert failure["error_kind"] == "timeout"
    assert "timed out" in tool_messages(model, 1)[0].content


async def test_agent_tool_timeout_applies_to_tools_without_their_own() -> None:
    @tool
    async def slow() -> str:
        """Never returns."""
        await asyncio.Event().wait()
        return "unreachable"

    model = ScriptedModel([{"tool_calls": [{"name": "slow"}]}, "ok"])
    agent = Agent(name="a", model=model, tools=[slow], tool_timeout_s=0.05)
    _, events = await run_agent(agent, "x")
    assert next(e.data for e in events if e.type == "tool.result")["error_kind"] == "timeout"


async def test_max_steps_stops_a_model_that_never_answers() -> None:
    loop_forever = [{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 1}}]}] * 10
    model = ScriptedModel(loop_forever)
    agent = Agent(name="a", model=model, tools=[add], max_steps=3)
    with pytest.raises(MaxStepsExceeded, match="max_steps=3"):
        await run_agent(agent, "x")
    assert len(model.requests) == 3


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ({"a": 1}, "b: Field required"),
        ({"a": "one", "b": 2}, "a: Input should be a valid integer"),
        ({"a": 1, "b": 2, "c": 3}, "c: Extra inputs are not permitted"),
        ("{not json", "invalid arguments for add"),
    ],
)
async def test_invalid_arguments_never_reach_the_tool(arguments: object, complaint: str) -> None:
    calls: list[tuple[int, int]] = []

    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        calls.append((a, b))
        return a + b

    model = ScriptedModel([{"tool_calls": [{"name": "add", "arguments": arguments}]}, "fine"])
    result, events = await run_agent(Agent(name="a", model=model, tools=[add]), "x")

    assert calls == []
    assert result.output == "fine"
    failure = next(e.data for e in events if e.type == "tool.result")
    assert failure["error_kind"] == "invalid_arguments"
    assert complaint in tool_messages(model, 1)[0].content


async def test_unknown_tool_is_reported_to_the_model() -> None:
    model = ScriptedModel([{"tool_calls": [{"name": "nope"}]}, "ok"])
    _, events = await run_agent(Agent(name="a", model=model, tools=[add]), "x")
    failure = next(e.data for e in events if e.type == "tool.result")
    assert failure["error_kind"] == "unknown_tool" and "available: add" in failure["error"]


async def test_sync_tools_run_off_the_event_loop() -> None:
    import threading

    seen: list[str] = []

    @tool
    def where() -> str:
        """Report the thread."""
        seen.append(threading.current_thread().name)
        return "here"

    model = ScriptedModel([{"tool_calls": [{"name": "where"}]}, "ok"])
    await run_agent(Agent(name="a", model=model, tools=[where]), "x")
    assert seen and seen[0] != threading.main_thread().name


async def test_model_failure_surfaces_as_model_error() -> None:
    model = ScriptedModel([{"error": "upstream 500"}])
    with pytest.raises(ModelError, match="upstream 500"):
        await run_agent(Agent(name="a", model=model), "x")


async def test_streamed_deltas_add_up_to_the_answer() -> None:
    result, events = await run_agent(Agent(name="e", model="scripted:echo"), "hello there world")
    deltas = "".join(e.data["text"] for e in events if e.type == "llm.delta")
    assert deltas == result.output == "echo: hello there world"


def test_tool_schema_comes_from_signature_and_docstring() -> None:
    @tool
    async def search(query: str, limit: int = 5, exact: bool = False) -> list[str]:
        """Search the catalogue.

        Args:
            query: Words to look for.
            limit: Most results to return.
        """
        return []

    spec = search.spec
    assert spec.name == "search"
    assert spec.description == "Search the catalogue."
    props = spec.parameters["properties"]
    assert props["query"] == {
        "type": "string",
        "title": "Query",
        "description": "Words to look for.",
    }
    assert props["limit"]["default"] == 5 and props["limit"]["type"] == "integer"
    assert props["exact"]["type"] == "boolean"
    assert spec.parameters["required"] == ["query"]
    assert spec.parameters["additionalProperties"] is False
    json.dumps(spec.parameters)
