"""Test doubles and helpers that ship with Shipyard, behind the real protocols."""

from __future__ import annotations

import httpx

from shipyard.agents.agent import AgentLike
from shipyard.agents.context import RunContext, RunInput, RunRequest, RunResult
from shipyard.models.resolver import ModelResolver
from shipyard.models.scripted import ScriptedModel, ScriptStep
from shipyard.telemetry.events import Emitter, Event, new_id


async def run_agent(
    agent: AgentLike,
    input: RunInput,
    *,
    default_model: str = "scripted:echo",
    tool_timeout_s: float = 30.0,
) -> tuple[RunResult, list[Event]]:
    """Run an agent directly, without a server or store; returns its result and every event."""
    events: list[Event] = []
    run_id = new_id("run")
    emitter = Emitter(
        run_id=run_id,
        tenant_id="test",
        agent=agent.name,
        trace_id="0" * 32,
        span_id="0" * 16,
        sinks=[events.append],
        stream_deltas=True,
    )
    ctx = RunContext(
        request=RunRequest(tenant_id="test", agent=agent.name, input=input, run_id=run_id),
        run_id=run_id,
        tenant_id="test",
        agent=agent.name,
        emitter=emitter,
        default_model=default_model,
        models=ModelResolver(),
        http=httpx.AsyncClient(),
        tool_timeout_s=tool_timeout_s,
    )
    return await agent.run(ctx, input), events


__all__ = ["ScriptStep", "ScriptedModel", "run_agent"]
