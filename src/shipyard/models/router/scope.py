"""What a router knows of the run a model call belongs to: tenant, agent, metadata, and where
its ``llm.route`` events go.

A model is resolved once per process, so the run reaches the router through a ``ContextVar``
that ``RouteScopeHook`` (a run hook the composition root adds when routers are registered) sets
before the agent runs and resets after. A call outside any run routes on the request alone and
emits no event. ``cheaper_only`` is the cost governor's ``degrade`` policy: while it is set,
routers pick only candidates cheaper than their default pick.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any, Protocol

from shipyard.telemetry.events import Emitter


@dataclass(slots=True)
class RouteScope:
    """The run a model call is made for (``cheaper_only`` may change while the run goes on)."""

    tenant_id: str = ""
    agent: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    emitter: Emitter | None = None
    cheaper_only: bool = False


route_scope: ContextVar[RouteScope | None] = ContextVar("shipyard_route_scope", default=None)


class _RunLike(Protocol):
    """What the hook reads of a run (``RunContext`` is one)."""

    @property
    def run_id(self) -> str: ...

    @property
    def tenant_id(self) -> str: ...

    @property
    def agent(self) -> str: ...

    @property
    def emitter(self) -> Emitter: ...

    @property
    def metadata(self) -> dict[str, Any]: ...


class RouteScopeHook:
    """A run hook: the run's ``RouteScope`` is current from before the agent to after it."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token[RouteScope | None]] = {}

    async def before(self, ctx: _RunLike) -> None:
        scope = RouteScope(ctx.tenant_id, ctx.agent, ctx.metadata, ctx.emitter)
        self._tokens[ctx.run_id] = route_scope.set(scope)

    async def after(self, ctx: _RunLike, ended: object) -> None:
        token = self._tokens.pop(ctx.run_id, None)
        if token is not None:
            try:
                route_scope.reset(token)
            except ValueError:  # set in another context (a hook's after on another task)
                route_scope.set(None)
