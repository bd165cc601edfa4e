"""Agents: the built-in tool-calling ``Agent``, and plain async functions as agents."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from shipyard.agents.context import ContextBudget, RunContext, RunInput, RunResult
from shipyard.agents.memory import Memory
from shipyard.agents.tool import Tool, ToolLike, as_tool
from shipyard.errors import ConfigError, RunFailure
from shipyard.guard.policy import GuardPolicy
from shipyard.guard.rules import EgressRules
from shipyard.models.base import ChatModel, ToolSpec
from shipyard.models.registry import parse_reference


@runtime_checkable
class AgentLike(Protocol):
    """Anything the runtime can serve: a name, a description, tools to show, and ``run``."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def tool_specs(self) -> tuple[ToolSpec, ...]: ...

    @property
    def context_budget(self) -> ContextBudget | None:
        """Limits the history a session turn sends; None means no limit."""
        ...

    async def run(self, ctx: RunContext, input: RunInput) -> RunResult: ...


@dataclass(frozen=True, eq=False)
class Agent:
    """An LLM agent: instructions, a model, tools, and the loop in ``shipyard.agents.loop``.

    ``model`` is a reference such as ``"openai:gpt-4.1-mini"`` or a ``ChatModel``; ``None`` uses
    the server's default (``SHIPYARD_MODEL``). A reference is checked here, so a typo fails when
    the app is defined rather than at the first run. ``tool_specs`` is built once, here too.
    ``egress``: where this agent's tools may reach through ``ctx.http``, within the server's
    rules (``EgressRules(hosts=["api.github.com"], methods=["GET"])``); None: the server's.
    ``guards``: this agent's guard policy (docs/guards.md); None: the server's
    (``SHIPYARD_GUARDS``). ``memory``: long-term memory (docs/memory.md): recall at the start
    of a run, the ``remember``/``recall``/``forget`` tools, extraction after it.
    """

    name: str
    instructions: str = ""
    model: str | ChatModel | None = None
    tools: Sequence[ToolLike] = ()
    max_steps: int = 10
    description: str = ""
    tool_timeout_s: float | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    context_budget: ContextBudget | None = None
    egress: EgressRules | None = None
    guards: GuardPolicy | None = None
    memory: Memory | None = None
    tool_specs: tuple[ToolSpec, ...] = field(init=False, repr=False)
    _tools: dict[str, Tool] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.max_steps < 1:
            raise ConfigError(f"agent {self.name}: max_steps must be at least 1")
        if isinstance(self.model, str):
            try:
                parse_reference(self.model)
            except ConfigError as exc:
                raise ConfigError(f"agent {self.name}: {exc.message}") from None
        tools = [as_tool(t) for t in self.tools]
        if self.memory is not None and self.memory.tools:
            from shipyard.agents.memory_tools import memory_tools

            tools.extend(memory_tools())
        by_name = {t.name: t for t in tools}
        if len(by_name) != len(tools):
            raise ConfigError(f"agent {self.name}: two tools share a name")
        object.__setattr__(self, "_tools", by_name)
        object.__setattr__(self, "tool_specs", tuple(t.spec for t in tools))

    def get_tool(self, name: str) -> Tool | None:
        return self._tools.get(name)

    async def run(self, ctx: RunContext, input: RunInput) -> RunResult:
        from shipyard.agents.loop import run_loop

        return await run_loop(self, ctx, input)


AgentFunction = Callable[[RunContext, RunInput], Awaitable[str]]


@dataclass(frozen=True, eq=False)
class FunctionAgent:
    """A plain ``async def agent(ctx, input) -> str`` served like any other agent."""

    name: str
    fn: AgentFunction
    description: str = ""
    tool_specs: tuple[ToolSpec, ...] = ()
    context_budget: ContextBudget | None = None
    egress: EgressRules | None = None
    """Where ``ctx.http`` may reach in this agent's runs (see ``Agent.egress``)."""
    guards: GuardPolicy | None = None
    """This agent's guard policy (see ``Agent.guards``)."""

    def __post_init__(self) -> None:
        _check_name(self.name)

    async def run(self, ctx: RunContext, input: RunInput) -> RunResult:
        output = await self.fn(ctx, input)
        if not isinstance(output, str):
            raise RunFailure(f"agent {self.name} returned {type(output).__name__}, not str")
        return RunResult(output=output, usage=ctx.usage)


def agent(
    name: str | None = None,
    *,
    description: str | None = None,
    egress: EgressRules | None = None,
) -> Callable[[AgentFunction], FunctionAgent]:
    """Register ``async def fn(ctx, input) -> str`` as an agent: ``@agent("summarise")``."""

    def wrap(fn: AgentFunction) -> FunctionAgent:
        doc = (fn.__doc__ or "").strip()
        return FunctionAgent(
            name=name or fn.__name__,
            fn=fn,
            description=description or doc.split("\n")[0],
            egress=egress,
        )

    return wrap


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ConfigError(f"agent name {name!r} must be letters, digits, '-', '_' or '.'")
