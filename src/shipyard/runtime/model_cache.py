"""The model cache's run hook: tells ``models.cache.CachedModel`` what it may serve each run —
the run's tenant, and the names of its agent's tools marked pure (``@tool(pure=True)``)."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import Token

from shipyard.agents.agent import Agent, AgentLike
from shipyard.agents.context import RunContext, RunResult
from shipyard.agents.tool import as_tool
from shipyard.models.cache import CacheScope, cache_scope


class CacheHook:
    """Sets ``cache_scope`` for the run before its agent starts; resets it after."""

    def __init__(self, agents: Mapping[str, AgentLike]) -> None:
        self._agents = agents
        self._pure: dict[str, frozenset[str]] = {}
        self._tokens: dict[str, Token[CacheScope | None]] = {}

    def pure_tools(self, agent: str) -> frozenset[str]:
        found = self._pure.get(agent)
        if found is None:
            served = self._agents.get(agent)
            tools = [as_tool(t) for t in served.tools] if isinstance(served, Agent) else []
            found = self._pure[agent] = frozenset(t.name for t in tools if t.pure)
        return found

    async def before(self, ctx: RunContext) -> None:
        scope = CacheScope(ctx.tenant_id, self.pure_tools(ctx.agent), ctx.emit)
        self._tokens[ctx.run_id] = cache_scope.set(scope)

    async def after(self, ctx: RunContext, ended: RunResult | BaseException) -> None:
        token = self._tokens.pop(ctx.run_id, None)
        if token is None:
            return
        try:
            cache_scope.reset(token)
        except ValueError:  # ``after`` ran in another context than ``before``
            cache_scope.set(None)
