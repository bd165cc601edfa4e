"""The long-term memory role (``MemoryStore``): texts with their embeddings, searched by meaning.

Every memory belongs to a tenant, and within it to an ``agent`` and a ``subject`` (a user, a
session; ``""`` for none). Every query names its tenant, so no call can reach another tenant's
memories; agent, subject and metadata equality filters narrow it further. A memory may expire
(``expires_at``): an expired one is never returned, and ``prune`` deletes it.

Search is hybrid: the nearest vectors (cosine) and the best full-text matches (SQLite FTS5,
PostgreSQL ``tsvector``) are fused by reciprocal rank fusion (:func:`rank`, shared by the
backends), optionally weighted by recency. The store never embeds: the caller
(``runtime.memory.MemoryService``) brings the vectors, so one store serves any embedder, and it
refuses to open a store built with another embedder (its vectors would not compare).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from shipyard.errors import ConfigError, InvalidInput

Scalar = str | int | float | bool
RRF_K = 60
"""Reciprocal rank fusion's constant: a hit at rank r adds 1 / (RRF_K + r)."""

_FILTER_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class MemoryItem:
    """One memory: its text, whose it is, free metadata, and when it expires (if ever)."""

    id: str
    tenant_id: str
    text: str
    created_at: datetime
    updated_at: datetime
    agent: str = ""
    subject: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ScoredMemory:
    """A search hit: the RRF score in hybrid search, the cosine similarity in vector-only."""

    item: MemoryItem
    score: float


@dataclass(frozen=True, slots=True)
class MemoryScope:
    """Which memories a list or search may see: the tenant's, narrowed by the rest.

    ``agent`` / ``subject`` ``None``: any; ``filters``: metadata keys that must equal these values.
    """

    tenant_id: str
    agent: str | None = None
    subject: str | None = None
    filters: Mapping[str, Scalar] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.tenant_id:
            raise ConfigError("a memory scope needs a tenant")
        for key, value in self.filters.items():
            if not _FILTER_KEY.fullmatch(key) or not isinstance(value, Scalar):
                raise InvalidInput(
                    f"metadata filter {key!r}: keys are 1-64 letters, digits, '_' or '-', "
                    "values a string, number or boolean"
                )


@dataclass(frozen=True, slots=True)
class SearchOptions:
    """``hybrid``: fuse full text with vectors (else vectors only); ``recency_half_life_s``: a
    memory that old counts half (None: age does not matter); ``candidates``: how many hits each
    ranking contributes to the fusion."""

    limit: int = 5
    hybrid: bool = True
    recency_half_life_s: float | None = None
    candidates: int = 20


Items = list[MemoryItem]
Hits = list[ScoredMemory]


class MemoryStore(Protocol):
    """Where long-term memories live: SQLite + sqlite-vec, or PostgreSQL + pgvector."""

    async def add(self, item: MemoryItem, embedding: Sequence[float]) -> None: ...

    async def add_many(self, items: Sequence[tuple[MemoryItem, Sequence[float]]]) -> None:
        """Add several memories in one transaction (all or none): an import, a seeding."""
        ...

    async def get(self, tenant_id: str, memory_id: str) -> MemoryItem | None:
        """The memory, unless it is another tenant's, unknown or expired."""
        ...

    async def update(self, item: MemoryItem, embedding: Sequence[float] | None = None) -> bool:
        """Replace the text, metadata, expiry and ``updated_at`` of ``item.id`` (in its tenant;
        the vector too when given); False if there is no such live memory."""
        ...

    async def delete(self, tenant_id: str, memory_id: str) -> bool: ...

    async def list(self, scope: MemoryScope, *, limit: int, before: str | None = None) -> Items:
        """Newest first; ``before``: the id of the last memory of the previous page."""
        ...

    async def search(
        self, scope: MemoryScope, embedding: Sequence[float], text: str, options: SearchOptions
    ) -> Hits:
        """The best memories for a query (its vector and its text), best first."""
        ...

    async def erase_subject(self, tenant: str, subject: str) -> int:
        """Delete every memory of ``subject`` in ``tenant``; how many there were."""
        ...

    async def prune(self, tenant: str | None, before: datetime) -> int:
        """Delete memories created before ``before`` and every expired one (of ``tenant``, or
        of all tenants with None); how many."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def query_words(text: str, limit: int = 32) -> list[str]:
    """The words of a query, for a full-text match of any of them (safe to quote)."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        seen.setdefault(word, None)
    return list(seen)[:limit]


def rank(
    vector_hits: Sequence[tuple[str, float]],
    text_hits: Sequence[str],
    items: Mapping[str, MemoryItem],
    options: SearchOptions,
    now: datetime,
) -> list[ScoredMemory]:
    """Fuse the two rankings (best first each) into the top ``options.limit`` memories.

    Vector-only search scores by cosine similarity; hybrid by the sum of 1 / (RRF_K + rank) over
    the rankings a memory is in. Recency weighting multiplies by 0.5 ** (age / half-life).
    """
    scores: dict[str, float] = {}
    if options.hybrid:
        for ranking in ([memory_id for memory_id, _ in vector_hits], text_hits):
            for position, memory_id in enumerate(ranking, start=1):
                scores[memory_id] = scores.get(memory_id, 0.0) + 1.0 / (RRF_K + position)
    else:
        scores = dict(vector_hits)
    half_life = options.recency_half_life_s
    hits = []
    for memory_id, score in scores.items():
        item = items.get(memory_id)
        if item is None:
            continue
        if half_life:
            age = max(0.0, (now - item.created_at).total_seconds())
            score *= math.pow(0.5, age / half_life)
        hits.append(ScoredMemory(item, round(score, 6)))
    hits.sort(key=lambda hit: (-hit.score, hit.item.id))
    return hits[: options.limit]


def check_embedding(embedding: Sequence[float], dimensions: int) -> None:
    if len(embedding) != dimensions:
        raise InvalidInput(
            f"an embedding of {len(embedding)} floats; this store holds {dimensions}"
        )


def check_embedder(found: tuple[str, int] | None, embedder: str, dimensions: int) -> None:
    """Refuse a store whose vectors another embedder made (``found``: what it was built with)."""
    if found is not None and found != (embedder, dimensions):
        raise ConfigError(
            f"the memory store holds vectors of {found[0]} ({found[1]} dimensions), not of "
            f"{embedder} ({dimensions}); use another SHIPYARD_MEMORY_URL or the same embedder"
        )
