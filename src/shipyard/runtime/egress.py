"""Each run's ``ctx.http``: the egress policy's client, narrowed to the run's agent and tenant,
reporting every request on the run's event stream.

One guarded connection pool serves the process (``guard.egress.guarded_transport``: the
address layer, with ``SHIPYARD_TOOL_ALLOW``'s exceptions). A run's client is made the first
time one of its tools reads ``ctx.http`` (a run that makes no call pays nothing) and is closed
with the run; its transport (``guard.transport.EgressTransport``) checks each request, each
redirect hop included, against these layers, all of which must let it through:

- ``server``: the server's default rules (``SHIPYARD_EGRESS_*``);
- ``agent``: the agent's own (``Agent(egress=EgressRules(...))``), if it has any;
- ``tenant``: the tenant policy's ``egress.allow`` host patterns, if set (read per request
  through the tenant policy cache, so a change applies within ``SHIPYARD_TENANT_CACHE_S``).

Each request becomes an ``egress.request`` event of the run, on the span of the tool that made
it (so it reaches the records, the streams, the log, the metrics and the trace like any event).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import httpx

from shipyard.errors import ConfigError
from shipyard.guard.egress import EgressPolicy, guarded_transport
from shipyard.guard.rules import EgressRules, Gate, Layer
from shipyard.guard.transport import EgressRecord, EgressTransport
from shipyard.telemetry.events import current_step

if TYPE_CHECKING:
    from shipyard.agents.context import RunContext

TenantHosts = Callable[[str], Awaitable[Sequence[str] | None]]
"""A tenant's ``egress.allow`` patterns (None: the tenant narrows nothing)."""

SERVER_SOURCE = "the server's egress rules (SHIPYARD_EGRESS_*)"


class ToolEgress:
    """Makes runs' ``ctx.http`` clients over one guarded connection pool."""

    def __init__(
        self,
        policy: EgressPolicy | None = None,
        defaults: EgressRules | None = None,
        *,
        tenant_hosts: TenantHosts | None = None,
        edge: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        """``policy``: the address layer (default: public addresses only). ``defaults``: the
        server's rules. ``tenant_hosts``: reads a tenant's ``egress.allow``. ``edge``: wraps
        the connection pool for what is added to a request the rules let through (the tools'
        credentials)."""
        self._pool = guarded_transport(policy or EgressPolicy(setting="SHIPYARD_TOOL_ALLOW"))
        self._edge: httpx.AsyncBaseTransport = edge(self._pool) if edge else self._pool
        self._server = Layer("server", SERVER_SOURCE, defaults or EgressRules())
        self._tenant_hosts = tenant_hosts

    def client(self, ctx: RunContext, rules: EgressRules | None = None) -> httpx.AsyncClient:
        """``ctx``'s client: the server's layer, ``rules`` (the agent's) and the tenant's."""
        layers = [self._server]
        if rules is not None:
            layers.append(Layer("agent", f"agent {ctx.agent!r}'s egress rules", rules))
        gate = Gate(layers)
        tenant_hosts = self._tenant_hosts
        tenant_id = ctx.tenant_id

        async def current() -> Gate:
            if tenant_hosts is None:
                return gate
            hosts = await tenant_hosts(tenant_id)
            if hosts is None:
                return gate
            return gate.narrowed(_tenant_layer(tenant_id, hosts))

        transport = EgressTransport(self._edge, current, lambda record: _emit(ctx, record))
        return httpx.AsyncClient(transport=transport, trust_env=False)

    async def aclose(self) -> None:
        await self._pool.aclose()


def _tenant_layer(tenant_id: str, hosts: Sequence[str]) -> Layer:
    source = f"tenant {tenant_id!r}'s policy (egress.allow)"
    try:
        rules = EgressRules(hosts=hosts)
    except ConfigError:  # a pattern the rules cannot read: nothing passes (fail closed)
        rules = EgressRules(hosts=())
    return Layer("tenant", source, rules)


def _emit(ctx: RunContext, record: EgressRecord) -> None:
    """The record as an ``egress.request`` event, on the span of the tool that made it."""
    step = current_step.get()
    span = None
    if step is not None and step.run_id == ctx.run_id and step.span_id != ctx.emitter.span_id:
        span = step.span_id
    with contextlib.suppress(Exception):  # a request must never fail for its telemetry
        ctx.emit("egress.request", span, **record.data())
