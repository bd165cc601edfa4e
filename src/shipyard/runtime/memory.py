"""Long-term memory at run time: ``MemoryService`` (embed, then store) and ``MemoryHook`` (the
run hook that recalls before an agent runs and extracts facts after it).

The service is what the API and ``ctx.memory`` call: it embeds texts with the server's embedder
(``SHIPYARD_EMBEDDER``) and counts each embedding call's tokens in the run's usage when there is
a run. The hook, for an ``Agent`` with ``memory=Memory(...)``: gives the run ``ctx.memory``;
recalls the ``recall`` best memories for the input, each passing the input guard as untrusted
text (a blocked one is dropped, a rewritten one rewritten); and after a successful run, with
``extract``, asks the model for the facts worth keeping (a JSON ``{"facts": [...]}``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from shipyard.agents.agent import Agent, AgentLike
from shipyard.agents.context import RunContext, RunResult
from shipyard.agents.memory import Memory, RunMemory, UsageSink
from shipyard.errors import InvalidInput, MemoryNotFound, ModelError
from shipyard.models.base import (
    AssistantMessage,
    ModelRequest,
    SystemMessage,
    UserMessage,
)
from shipyard.models.embedding import Embedder, Vector, embed_metered
from shipyard.stores.memory.base import (
    MemoryItem,
    MemoryScope,
    MemoryStore,
    ScoredMemory,
    SearchOptions,
)
from shipyard.stores.records.base import SessionRecords
from shipyard.telemetry.events import new_id

log = structlog.get_logger(__name__)

MAX_TEXT = 8000
MAX_FACTS = 10
EXTRACT_PROMPT = (
    "You keep a long-term memory for an assistant. From the conversation below, write down the "
    "facts about the user or their situation worth remembering in later conversations: short, "
    "self-contained sentences, nothing already obvious, nothing secret. Answer with JSON only: "
    '{"facts": ["..."]} (an empty list when there is nothing worth keeping).'
)
FACTS_SCHEMA = {
    "type": "object",
    "properties": {"facts": {"type": "array", "items": {"type": "string"}}},
    "required": ["facts"],
}


class MemoryService:
    """Memories of every tenant: texts embedded by ``embedder``, kept in ``store``."""

    def __init__(self, store: MemoryStore, embedder: Embedder, *, candidates: int = 20) -> None:
        self.store = store
        self.embedder = embedder
        self.candidates = candidates
        self.embed_calls = 0
        self.embed_tokens = 0

    async def _embed(self, texts: Sequence[str], usage: UsageSink | None) -> list[Vector]:
        vectors, used = await embed_metered(self.embedder, texts)
        self.embed_calls += 1
        self.embed_tokens += used.prompt_tokens
        if usage is not None and used.prompt_tokens:
            usage.add_usage(used)
        return vectors

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
    ) -> MemoryItem:
        """Embed and keep ``text``; ``ttl_s``: it expires that long from now."""
        _check_text(text)
        now = datetime.now(UTC)
        item = MemoryItem(
            id=new_id("mem"),
            tenant_id=tenant_id,
            text=text,
            created_at=now,
            updated_at=now,
            agent=agent,
            subject=subject,
            metadata=dict(metadata or {}),
            expires_at=None if ttl_s is None else now + timedelta(seconds=ttl_s),
        )
        [vector] = await self._embed([text], usage)
        await self.store.add(item, vector)
        return item

    async def get(self, tenant_id: str, memory_id: str) -> MemoryItem:
        found = await self.store.get(tenant_id, memory_id)
        if found is None:
            raise MemoryNotFound(f"no memory {memory_id!r}")
        return found

    async def update(
        self,
        tenant_id: str,
        memory_id: str,
        *,
        text: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        ttl_s: float | None = None,
    ) -> MemoryItem:
        """Change the text (re-embedded), the metadata (replaced) or the expiry (from now)."""
        item = await self.get(tenant_id, memory_id)
        now = datetime.now(UTC)
        changed = replace(
            item,
            text=item.text if text is None else _check_text(text),
            metadata=item.metadata if metadata is None else dict(metadata),
            expires_at=item.expires_at if ttl_s is None else now + timedelta(seconds=ttl_s),
            updated_at=now,
        )
        vector = None if text is None else (await self._embed([text], None))[0]
        if not await self.store.update(changed, vector):
            raise MemoryNotFound(f"no memory {memory_id!r}")
        return changed

    async def delete(self, tenant_id: str, memory_id: str) -> None:
        if not await self.store.delete(tenant_id, memory_id):
            raise MemoryNotFound(f"no memory {memory_id!r}")

    async def forget(self, scope: MemoryScope, memory_id: str) -> bool:
        """Delete a memory of ``scope`` only (a tool may not reach another subject's)."""
        found = await self.store.get(scope.tenant_id, memory_id)
        if found is None or (found.agent, found.subject) != (scope.agent, scope.subject):
            return False
        return await self.store.delete(scope.tenant_id, memory_id)

    async def search(
        self,
        scope: MemoryScope,
        query: str,
        *,
        limit: int = 5,
        hybrid: bool = True,
        recency_half_life_s: float | None = None,
        usage: UsageSink | None = None,
    ) -> list[ScoredMemory]:
        """The memories of ``scope`` best matching ``query``, best first."""
        [vector] = await self._embed([query], usage)
        options = SearchOptions(
            limit=limit,
            hybrid=hybrid,
            recency_half_life_s=recency_half_life_s,
            candidates=max(self.candidates, limit),
        )
        return await self.store.search(scope, vector, query, options)

    async def list(
        self, scope: MemoryScope, *, limit: int, before: str | None = None
    ) -> list[MemoryItem]:
        return await self.store.list(scope, limit=limit, before=before)

    async def close(self) -> None:
        await self.store.close()
        close = getattr(self.embedder, "aclose", None)
        if close is not None:
            await close()


def _check_text(text: str) -> str:
    if not text.strip() or len(text) > MAX_TEXT:
        raise InvalidInput(f"a memory is 1 to {MAX_TEXT} characters of text")
    return text


class MemoryHook:
    """The run hook of agents with memory: ``ctx.memory``, recall before, extraction after."""

    def __init__(
        self,
        service: MemoryService,
        agents: Mapping[str, AgentLike],
        sessions: SessionRecords | None = None,
    ) -> None:
        """``sessions``: where a session turn's subject is read from (the session's metadata),
        for user-scoped memory; a turn's own request carries none."""
        self.service = service
        self.agents = agents
        self.sessions = sessions

    def _settings(self, ctx: RunContext) -> tuple[Agent, Memory] | None:
        agent = self.agents.get(ctx.agent)
        if isinstance(agent, Agent) and agent.memory is not None:
            return agent, agent.memory
        return None

    async def before(self, ctx: RunContext) -> None:
        found = self._settings(ctx)
        if found is None:
            return
        agent, settings = found
        subject = await self._subject(ctx, settings)
        if subject is None:
            return
        ctx.memory = RunMemory(self.service, settings, ctx.tenant_id, agent.name, subject, ctx)
        query = _last_user_text(ctx)
        if settings.recall and query:
            hits = await ctx.memory.recall(query, settings.recall)
            ctx.recalled = tuple(_guarded(ctx, [hit.item.text for hit in hits]))

    async def _subject(self, ctx: RunContext, settings: Memory) -> str | None:
        session_id = ctx.request.session_id
        subject = settings.subject(ctx.request.metadata, session_id)
        if subject is None and settings.scope == "user" and session_id and self.sessions:
            record = await self.sessions.get_session(ctx.tenant_id, session_id)
            if record is not None:
                subject = settings.subject(record.metadata, session_id)
        return subject

    async def after(self, ctx: RunContext, ended: RunResult | BaseException) -> None:
        found = self._settings(ctx)
        if found is None or ctx.memory is None or not isinstance(ended, RunResult):
            return
        agent, settings = found
        if settings.extract:
            facts = await _extract(ctx, agent, settings, ended)
            for fact in facts[:MAX_FACTS]:
                await ctx.memory.remember(fact, {"source": "extracted", "run_id": ctx.run_id})


def _guarded(ctx: RunContext, texts: list[str]) -> list[str]:
    """Recalled texts as the input guard lets the model see them (untrusted: a memory may carry
    an injection a user planted earlier); each decision is an event of the run."""
    if ctx.guard is None or not ctx.guard.watches("input"):
        return texts
    kept = []
    for text in texts:
        judged = ctx.guard.check("input", text)
        for decision in judged.decisions:
            ctx.emit(decision.event_type, **decision.data())
        if not judged.blocked:
            kept.append(judged.text)
    return kept


def _last_user_text(ctx: RunContext) -> str:
    input = ctx.request.input
    if isinstance(input, str):
        return input
    for message in reversed(input):
        if isinstance(message, UserMessage):
            return message.content
    return ""


async def _extract(ctx: RunContext, agent: Agent, settings: Memory, result: RunResult) -> list[str]:
    """The facts the model finds worth keeping in this run (none if its answer is not the JSON
    asked for: extraction never fails a run that succeeded)."""
    transcript = f"user: {_last_user_text(ctx)}\nassistant: {result.output}"
    request = ModelRequest(
        messages=(SystemMessage(content=EXTRACT_PROMPT), UserMessage(content=transcript)),
        response_schema=FACTS_SCHEMA,
    )
    try:
        response = await ctx.model(settings.extract_model or agent.model).complete(request)
    except ModelError as exc:  # the run's answer stands; the failed call is on its stream
        log.warning("memory extraction failed; nothing kept", run_id=ctx.run_id, error=exc.message)
        return []
    return _facts(response.message)


def _facts(message: AssistantMessage) -> list[str]:
    try:
        found = json.loads(message.content or "")
    except ValueError:
        log.info("memory extraction answered no JSON; nothing kept")
        return []
    facts = found.get("facts") if isinstance(found, dict) else found
    if not isinstance(facts, list):
        return []
    return [f.strip() for f in facts if isinstance(f, str) and f.strip() and len(f) <= MAX_TEXT]
