"""Test doubles and helpers that ship with Shipyard, behind the real protocols."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shipyard.agents.agent import AgentLike
from shipyard.agents.context import RunInput, RunRequest, RunResult
from shipyard.models.resolver import ModelResolver, ModelWrapper
from shipyard.models.router import Router, RouteScopeHook
from shipyard.models.scripted import ScriptedModel, ScriptStep
from shipyard.runtime.egress import ToolEgress
from shipyard.runtime.hooks import RunHook
from shipyard.runtime.invoke import Invoker, RunLimits
from shipyard.telemetry.events import Event, ProcessorFactory


async def run_agent(
    agent: AgentLike,
    input: RunInput,
    *,
    default_model: str = "scripted:echo",
    tool_timeout_s: float = 30.0,
    model_wrappers: Sequence[ModelWrapper] = (),
    event_processors: Sequence[ProcessorFactory] = (),
    run_hooks: Sequence[RunHook] = (),
    egress: ToolEgress | None = None,
    routers: Sequence[Router] = (),
    tenant_id: str = "test",
    metadata: Mapping[str, Any] | None = None,
) -> tuple[RunResult, list[Event]]:
    """Run an agent once without a server or store, through the same invoker as a server's
    runs (with the given wrappers, processors and hooks); returns its result and every event
    of the run, ``run.started`` to ``run.completed`` (``llm.delta`` included). A failed run
    raises what a server's caller would get. ``egress``: what the run's ``ctx.http`` may reach
    (default: public addresses under the default rules); the caller closes one it passes.
    ``routers``: what ``router:<name>`` references name (their scope hook is added)."""
    events: list[Event] = []
    limits = RunLimits(default_model=default_model, tool_timeout_s=tool_timeout_s)
    own = egress is None
    tools_egress = egress or ToolEgress()
    try:
        invoker = Invoker(
            {agent.name: agent},
            None,
            limits,
            observers=[events.append],
            models=ModelResolver(model_wrappers, routers=routers),
            processors=event_processors,
            hooks=[*([RouteScopeHook()] if routers else []), *run_hooks],
            egress=tools_egress,
        )
        request = RunRequest(
            tenant_id=tenant_id, agent=agent.name, input=input, metadata=metadata or {}
        )
        outcome = await invoker.invoke(request, stream_deltas=True)
    finally:
        if own:
            await tools_egress.aclose()
    result = RunResult(output=outcome.answer, usage=outcome.usage, messages=outcome.messages)
    return result, events


__all__ = ["ScriptStep", "ScriptedModel", "run_agent"]
