"""Agents calling agents: as a tool (a child run in this process) or as a task (through the
broker, awaited or not).

The child is a run of its own, recorded with ``parent_run_id`` pointing at the caller and
traced under the calling step's span, so the whole exchange is one trace. These functions work
only inside a run (an agent's tools, a function agent's body): the runtime that started the
run is how they reach the other agent.

    triage = Agent(
        name="triage",
        tools=[agent_tool("researcher"), task_tool("writer", wait=True)],
    )
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from shipyard.agents.context import RunInput
from shipyard.agents.tool import Tool, make_tool
from shipyard.errors import ConfigError


@dataclass(frozen=True, slots=True)
class DelegatedTask:
    """A task another agent was given: its id, and its outcome when it was awaited."""

    task_id: str
    status: str
    output: str | None = None
    error: dict[str, Any] | None = None


class AgentCalls(Protocol):
    """What the runtime offers a running agent to reach other agents."""

    async def call(self, agent: str, input: RunInput) -> str: ...

    async def submit(
        self, agent: str, input: RunInput, *, wait: bool, timeout_s: float
    ) -> DelegatedTask: ...


current_calls: ContextVar[AgentCalls | None] = ContextVar("shipyard_agent_calls", default=None)
"""Set by the runtime for the length of each run."""


def _calls() -> AgentCalls:
    calls = current_calls.get()
    if calls is None:
        raise ConfigError("agents can call other agents only from inside a run")
    return calls


async def call_agent(agent: str, input: RunInput) -> str:
    """Run ``agent`` now, in this process, as a child of the current run; its answer."""
    return await _calls().call(agent, input)


async def submit_task(
    agent: str, input: RunInput, *, wait: bool = False, timeout_s: float = 300.0
) -> DelegatedTask:
    """Hand ``agent`` a task through the broker (any worker runs it). With ``wait``, return once
    it has ended (``TimeoutError`` after ``timeout_s``); otherwise at once, queued.

    Awaiting a task from inside a task needs a free worker slot for the child: with every slot
    waiting on children, they wait until ``timeout_s``.
    """
    return await _calls().submit(agent, input, wait=wait, timeout_s=timeout_s)


def agent_tool(
    agent: str,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
) -> Tool:
    """A tool that asks ``agent`` (a child run in this process) and returns its answer."""

    async def ask(request: str) -> str:
        """Args:
        request: What the agent should do, with everything it needs to know.
        """
        return await call_agent(agent, request)

    return make_tool(
        ask,
        name=name or f"ask_{agent}",
        description=description or f"Ask the {agent} agent and get its answer.",
        timeout_s=timeout_s,
    )


def task_tool(
    agent: str,
    *,
    wait: bool = False,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
) -> Tool:
    """A tool that hands ``agent`` a task. With ``wait`` the tool returns the task's output
    (waiting at most ``timeout_s``, default the calling agent's tool timeout); without, the
    task id at once (the task runs on a worker later)."""

    async def hand_over(request: str) -> dict[str, Any]:
        """Args:
        request: What the agent should do, with everything it needs to know.
        """
        task = await submit_task(agent, request, wait=wait, timeout_s=timeout_s or 300.0)
        result: dict[str, Any] = {"task_id": task.task_id, "status": task.status}
        if task.output is not None:
            result["output"] = task.output
        if task.error is not None:
            result["error"] = task.error
        return result

    verb = "and wait for" if wait else "without waiting for"
    return make_tool(
        hand_over,
        name=name or f"task_{agent}",
        description=description or f"Give the {agent} agent a task {verb} its result.",
        timeout_s=timeout_s,
    )
