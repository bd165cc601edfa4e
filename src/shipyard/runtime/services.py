"""The running system as the surface sees it: services built on protocols, wired by the root."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from shipyard.agents.agent import AgentLike
from shipyard.models.resolver import ModelResolver
from shipyard.runtime.artifacts import ArtifactService
from shipyard.runtime.audit import AuditLog
from shipyard.runtime.budget import Governor
from shipyard.runtime.control import Control
from shipyard.runtime.egress import ToolEgress
from shipyard.runtime.invoke import Invoker
from shipyard.runtime.lifecycle import Eraser
from shipyard.runtime.limits import Limiter
from shipyard.runtime.memory import MemoryService
from shipyard.runtime.recorder import Recorder
from shipyard.runtime.retention import TenantRetention
from shipyard.runtime.sessions import SessionService
from shipyard.runtime.tasks import TaskService
from shipyard.runtime.tenants import TenantPolicies
from shipyard.runtime.webhooks import WebhookSender
from shipyard.stores.broker.base import Broker
from shipyard.stores.records.base import RecordStore
from shipyard.stores.secrets.refs import SecretCache
from shipyard.stores.state.base import StateStore
from shipyard.telemetry.observability import Observability


class Pingable(Protocol):
    async def ping(self) -> None:
        """Return when the store answers; a ``StoreError`` when it does not."""
        ...


@dataclass(frozen=True, slots=True)
class Services:
    agents: Mapping[str, AgentLike]
    records: RecordStore
    recorder: Recorder
    invoker: Invoker
    state: StateStore
    sessions: SessionService
    broker: Broker
    tasks: TaskService
    webhooks: WebhookSender
    control: Control
    tenants: TenantPolicies
    observability: Observability = field(default_factory=Observability)
    models: ModelResolver = field(default_factory=ModelResolver)
    """Every model call of every run is resolved (and wrapped) here; the invoker's own."""
    egress: ToolEgress | None = None
    """Makes the runs' ``ctx.http`` clients (the invoker's); its connection pool is closed
    with the services."""
    secrets: SecretCache | None = None
    """The secret store (through its cache) that model options and tool credentials read;
    closed with the services."""
    limiter: Limiter | None = None
    """Rate limits and runs in flight (``runtime.limits``); None: limits are off."""
    audit: AuditLog | None = None
    """The process's audit log (``runtime.audit``): requests, refusals, admin actions."""
    artifacts: ArtifactService | None = None
    """Runs' artifacts (``runtime.artifacts``): records here, bytes in the regional blob stores;
    closed with the services."""
    retention: TenantRetention | None = None
    """The tenants' retention, swept in the background from ``start`` (None: never here)."""
    eraser: Eraser | None = None
    """Erases a subject from every store (``DELETE /v1/subjects/{id}``; ``runtime.lifecycle``)."""
    memory: MemoryService | None = None
    """Long-term memory (``runtime.memory``): the embedder and the memory store; closed with
    the services."""
    governor: Governor | None = None
    """Spend budgets (``runtime.budget``); None: budgets are off."""

    def pinged(self) -> list[tuple[str, Pingable]]:
        """The stores a start and ``/readyz`` check, in order: records, state, broker, memory."""
        stores: list[tuple[str, Pingable]] = [
            ("records", self.records),
            ("state", self.state),
            ("broker", self.broker),
        ]
        if self.memory is not None:
            stores.append(("memory", self.memory.store))
        return stores

    async def start(self) -> None:
        await self.recorder.start()
        if self.audit is not None:
            await self.audit.start()
        sessions = self.sessions
        await self.observability.start(
            queues=self.broker, active_sessions=lambda: sessions.active_turns
        )
        if self.retention is not None:
            self.retention.start()

    async def close(self, drain_s: float = 10.0) -> None:
        """Let runs in flight finish (or record them cancelled), flush their records, close."""
        if self.retention is not None:
            await self.retention.stop()
        await self.invoker.drain(drain_s)
        await self.tasks.close()
        await self.recorder.close()
        if self.audit is not None:
            await self.audit.close()
        await self.observability.close()
        await self.records.close()
        await self.control.close()
        await self.state.close()
        await self.broker.close()
        await self.webhooks.close()
        if self.egress is not None:
            await self.egress.aclose()
        if self.secrets is not None:
            await self.secrets.store.close()
        if self.artifacts is not None:
            await self.artifacts.blobs.close()
        if self.memory is not None:
            await self.memory.close()
