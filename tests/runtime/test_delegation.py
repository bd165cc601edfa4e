"""Agents calling agents, on the real services (SQLite records, embedded broker, a worker in
this process): child runs link to their parent run and hang under the calling step's span."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import shipyard
from shipyard import RunContext, RunInput, agent_tool, call_agent, submit_task, task_tool
from shipyard.agents.context import RunRequest
from shipyard.app import build_services
from shipyard.config import load_settings
from shipyard.errors import ConfigError
from shipyard.models.scripted import ScriptedCall
from shipyard.runtime.services import Services
from shipyard.runtime.worker import Worker
from shipyard.stores.records.base import RunRecord
from shipyard.telemetry.tracecontext import TraceParent
from shipyard.testing import ScriptedModel, ScriptStep

TENANT = "default"


@shipyard.agent("boss")
async def boss(ctx: RunContext, input: RunInput) -> str:
    """Asks the echo agent in-process, then hands it a task and waits."""
    heard = await call_agent("echo", f"research {input}")
    task = await submit_task("echo", f"write {input}", wait=True, timeout_s=30)
    return f"{heard} | {task.output} ({task.status})"


@shipyard.agent("dispatcher")
async def dispatcher(ctx: RunContext, input: RunInput) -> str:
    """Hands a task over and does not wait."""
    task = await submit_task("echo", "later")
    return task.task_id


tool_user = shipyard.Agent(
    name="tool_user",
    model=ScriptedModel(
        [
            ScriptStep(
                tool_calls=[
                    ScriptedCall(name="ask_echo", arguments={"request": "via a tool"}),
                    ScriptedCall(name="task_echo", arguments={"request": "via a task"}),
                ]
            ),
            ScriptStep(text="done"),
        ]
    ),
    tools=[agent_tool("echo"), task_tool("echo", wait=True, timeout_s=30)],
)

APP = shipyard.App(
    agents=[
        shipyard.Agent(name="echo", model="scripted:echo"),
        boss,
        dispatcher,
        tool_user,
    ]
)


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    settings = load_settings(home=tmp_path, model="scripted:echo", log_events=False)
    built = build_services(APP, settings)
    await built.records.migrate()
    await built.start()
    worker = Worker(built, concurrency=4)
    running = asyncio.create_task(worker.run())
    yield built
    worker.stop()
    await asyncio.wait_for(running, 30)
    await built.close()


async def _runs(services: Services) -> list[RunRecord]:
    await services.recorder.durable()
    return list((await services.records.list_runs(TENANT, limit=100)).items)


async def test_children_link_to_their_parent_run_and_trace(services: Services) -> None:
    parent = TraceParent.new()
    outcome = await services.invoker.invoke(
        RunRequest(tenant_id=TENANT, agent="boss", input="the sky", parent=parent)
    )
    assert outcome.output == "echo: research the sky | echo: write the sky (succeeded)"
    runs = {r.id: r for r in await _runs(services)}
    top = runs[outcome.run_id]
    assert top.parent_run_id is None and top.trace_id == parent.trace_id
    children = [r for r in runs.values() if r.parent_run_id == top.id]
    assert sorted(str(r.input) for r in children) == ["research the sky", "write the sky"]
    assert {r.trace_id for r in children} == {parent.trace_id}  # one trace, across the broker
    in_task = next(r for r in children if r.task_id is not None)
    assert in_task.input == "write the sky"

    # every child hangs under the boss's run span (a function agent's own step)
    top_span = (await services.records.list_events(TENANT, top.id))[0].span_id
    for child in children:
        started = (await services.records.list_events(TENANT, child.id))[0]
        assert started.type == "run.started" and started.parent_span_id == top_span
        assert started.data["parent_run_id"] == top.id


async def test_agents_as_tools_hang_under_the_tool_calls_span(services: Services) -> None:
    outcome = await services.invoker.invoke(
        RunRequest(tenant_id=TENANT, agent="tool_user", input="go")
    )
    assert outcome.output == "done"
    events = await services.records.list_events(TENANT, outcome.run_id)
    results = {e.data["name"]: e.data for e in events if e.type == "tool.result"}
    assert results["ask_echo"]["output"] == "echo: via a tool"
    assert '"output":"echo: via a task"' in results["task_echo"]["output"]
    tool_spans = {e.data["name"]: e.span_id for e in events if e.type == "tool.call"}
    run_span = events[0].span_id
    assert all(e.parent_span_id == run_span for e in events if e.type == "tool.call")

    children = [r for r in await _runs(services) if r.parent_run_id == outcome.run_id]
    assert len(children) == 2
    for child in children:
        started = (await services.records.list_events(TENANT, child.id))[0]
        expected = tool_spans["task_echo" if child.task_id else "ask_echo"]
        assert started.parent_span_id == expected
        assert child.trace_id == outcome.trace_id


async def test_a_task_handed_over_without_waiting_is_queued(services: Services) -> None:
    outcome = await services.invoker.invoke(
        RunRequest(tenant_id=TENANT, agent="dispatcher", input="x")
    )
    task = await services.tasks.get(TENANT, outcome.output)
    assert task.agent == "echo" and task.input == "later"
    for _ in range(300):
        task = await services.tasks.get(TENANT, task.id)
        if task.status == "succeeded":
            break
        await asyncio.sleep(0.05)
    assert task.status == "succeeded" and task.run_id is not None
    child = await services.records.get_run(TENANT, task.run_id)
    assert child is not None and child.parent_run_id == outcome.run_id


async def test_calling_an_agent_outside_a_run_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="only from inside a run"):
        await call_agent("echo", "hello")
