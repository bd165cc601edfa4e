"""An agent's long-term memory: ``Agent(memory=Memory(scope="user", recall=5, extract=True))``.

``Memory`` says whose memories a run sees (``scope``), how many are recalled into the context at
the start of a run (``recall``), and whether facts worth keeping are extracted after it. The
server's memory run hook (``runtime.memory.MemoryHook``) does the recall and the extraction and
gives the run ``ctx.memory`` (a :class:`RunMemory`), which the ``remember``, ``recall`` and
``forget`` tools (``agents.memory_tools``) and any tool of your own use.

Scopes: ``user`` — the run's ``subject`` (``metadata={"subject": ...}`` of the run); without
one the run has no memory. ``session`` — the run's session (a stateless run has none).
``agent`` — shared by every run of the agent in the tenant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from shipyard.errors import ConfigError
from shipyard.models.base import ChatModel, Usage
from shipyard.stores.memory.base import MemoryItem, MemoryScope, ScoredMemory

MemoryScopeKind = Literal["user", "session", "agent"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Memory:
    """An agent's memory settings.

    ``recall``: memories put into the context at the start of each run (0: none, the tools
    still work). ``extract``: after a run, the model (``extract_model``, else the agent's)
    writes down the facts worth keeping. ``tools``: offer ``remember``, ``recall``, ``forget``.
    ``ttl_s``: how long new memories live (None: until deleted or pruned).
    ``recency_half_life_s``: recall favours newer memories (a memory that old counts half).
    """

    scope: MemoryScopeKind = "user"
    recall: int = 5
    extract: bool = False
    extract_model: str | ChatModel | None = None
    tools: bool = True
    ttl_s: float | None = None
    recency_half_life_s: float | None = None

    def __post_init__(self) -> None:
        if self.scope not in ("user", "session", "agent"):
            raise ConfigError(f"memory scope {self.scope!r}: one of user, session, agent")
        if not 0 <= self.recall <= 50:
            raise ConfigError("memory recall must be between 0 and 50")
        if self.ttl_s is not None and self.ttl_s <= 0:
            raise ConfigError("memory ttl_s must be positive")

    def subject(self, metadata: Mapping[str, Any], session_id: str | None) -> str | None:
        """The subject of a run's memories under this scope; None: the run has no memory."""
        if self.scope == "agent":
            return ""
        if self.scope == "session":
            return f"session:{session_id}" if session_id else None
        found = metadata.get("subject")
        return found if isinstance(found, str) and found else None


class UsageSink(Protocol):
    """Where an embedding call's tokens are counted (a run's context)."""

    def add_usage(self, usage: Usage) -> None: ...


class MemoryBackend(Protocol):
    """What a run's memory calls (``runtime.memory.MemoryService`` on a server)."""

    async def add(
        self,
        tenant_id: str,
        text: str,
        *,
        agent: str = "",
        subject: str = "",
        metadata: Mapping[str, Any] | None = None,
        ttl_s: float | None = None,
        usage: UsageSink | None = None,
    ) -> MemoryItem: ...

    async def search(
        self,
        scope: MemoryScope,
        query: str,
        *,
        limit: int = 5,
        recency_half_life_s: float | None = None,
        usage: UsageSink | None = None,
    ) -> Sequence[ScoredMemory]: ...

    async def forget(self, scope: MemoryScope, memory_id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class RunMemory:
    """``ctx.memory``: the memories of this run's tenant, agent and subject.

    ``usage``: where embedding calls' tokens are counted (the run's context).
    """

    backend: MemoryBackend
    settings: Memory
    tenant_id: str
    agent: str
    subject: str
    usage: UsageSink | None = None

    @property
    def scope(self) -> MemoryScope:
        return MemoryScope(self.tenant_id, agent=self.agent, subject=self.subject)

    async def remember(self, text: str, metadata: Mapping[str, Any] | None = None) -> MemoryItem:
        """Keep ``text`` (with ``metadata``) for later runs of this scope."""
        return await self.backend.add(
            self.tenant_id,
            text,
            agent=self.agent,
            subject=self.subject,
            metadata=metadata,
            ttl_s=self.settings.ttl_s,
            usage=self.usage,
        )

    async def recall(self, query: str, limit: int | None = None) -> Sequence[ScoredMemory]:
        """The memories of this scope best matching ``query``, best first."""
        return await self.backend.search(
            self.scope,
            query,
            limit=limit or self.settings.recall or 5,
            recency_half_life_s=self.settings.recency_half_life_s,
            usage=self.usage,
        )

    async def forget(self, memory_id: str) -> bool:
        """Delete one of this scope's memories; False if it has none of that id."""
        return await self.backend.forget(self.scope, memory_id)
