"""``/v1/memories``: a tenant's long-term memories — add, search or list, read, change, delete.

``GET /v1/memories?q=...`` searches (hybrid: meaning and words), best first, each with its
``score``; without ``q`` it lists, newest first, a page at a time (``next_cursor``). ``agent``
and ``subject`` narrow either. Scopes as for runs: ``invoke`` writes, ``read`` reads. Another
tenant's memory id is a 404, as an unknown one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from shipyard.api.auth import require
from shipyard.api.errors import responses
from shipyard.api.fields import MAX_SECONDS, Metadata, Text
from shipyard.api.keys import Principal
from shipyard.api.state import services
from shipyard.errors import ConfigError
from shipyard.runtime.memory import MAX_TEXT, MemoryService
from shipyard.stores.memory.base import MemoryItem, MemoryScope

router = APIRouter(tags=["memories"])
Writer = Annotated[Principal, Depends(require("invoke"))]
Reader = Annotated[Principal, Depends(require("read"))]
Ttl = Annotated[int, Field(ge=1, le=MAX_SECONDS, description="Expire this many seconds from now.")]
Name = Annotated[Text, Field(max_length=256)]


class MemoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[Text, Field(min_length=1, max_length=MAX_TEXT)]
    agent: Name = Field("", description="The agent it belongs to ('' for none).")
    subject: Name = Field("", description="Whom it is about: a user, a session ('' for none).")
    metadata: Metadata = Field(default_factory=dict)
    ttl_seconds: Ttl | None = None


class MemoryPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[Text, Field(min_length=1, max_length=MAX_TEXT)] | None = None
    metadata: Metadata | None = Field(None, description="Replaces the metadata.")
    ttl_seconds: Ttl | None = None


class MemoryOut(BaseModel):
    id: str
    text: str
    agent: str
    subject: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    score: float | None = Field(None, description="The search score (searches only).")

    @classmethod
    def of(cls, item: MemoryItem, score: float | None = None) -> MemoryOut:
        return cls(
            id=item.id,
            text=item.text,
            agent=item.agent,
            subject=item.subject,
            metadata=dict(item.metadata),
            created_at=item.created_at,
            updated_at=item.updated_at,
            expires_at=item.expires_at,
            score=score,
        )


class MemoryPage(BaseModel):
    memories: list[MemoryOut]
    next_cursor: str | None = None


def _memory(request: Request) -> MemoryService:
    found = services(request).memory
    if found is None:
        raise ConfigError("this server has no memory store")
    return found


@router.post(
    "/v1/memories", response_model=MemoryOut, status_code=201, responses=responses(502, body=True)
)
async def add_memory(body: MemoryIn, request: Request, principal: Writer) -> MemoryOut:
    """Keep a memory (embedded now, searchable at once)."""
    item = await _memory(request).add(
        principal.tenant_id,
        body.text,
        agent=body.agent,
        subject=body.subject,
        metadata=body.metadata,
        ttl_s=body.ttl_seconds,
    )
    return MemoryOut.of(item)


@router.get("/v1/memories", response_model=MemoryPage, responses=responses(502))
async def find_memories(
    request: Request,
    principal: Reader,
    q: Annotated[Text | None, Query(min_length=1, max_length=MAX_TEXT)] = None,
    agent: Annotated[Name | None, Query()] = None,
    subject: Annotated[Name | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    cursor: Annotated[Text | None, Query(max_length=64)] = None,
) -> MemoryPage:
    """Search with ``q`` (best first, with scores; one page), else list newest first."""
    scope = MemoryScope(principal.tenant_id, agent=agent, subject=subject)
    service = _memory(request)
    if q is not None:
        hits = await service.search(scope, q, limit=limit)
        return MemoryPage(memories=[MemoryOut.of(h.item, h.score) for h in hits])
    items = await service.list(scope, limit=limit + 1, before=cursor)
    more = len(items) > limit
    items = items[:limit]
    return MemoryPage(
        memories=[MemoryOut.of(item) for item in items],
        next_cursor=items[-1].id if more else None,
    )


@router.get("/v1/memories/{memory_id}", response_model=MemoryOut, responses=responses(404))
async def get_memory(memory_id: Text, request: Request, principal: Reader) -> MemoryOut:
    return MemoryOut.of(await _memory(request).get(principal.tenant_id, memory_id))


@router.patch(
    "/v1/memories/{memory_id}", response_model=MemoryOut, responses=responses(404, 502, body=True)
)
async def change_memory(
    memory_id: Text, body: MemoryPatch, request: Request, principal: Writer
) -> MemoryOut:
    """Change the text (re-embedded), replace the metadata, or set a new expiry from now."""
    item = await _memory(request).update(
        principal.tenant_id,
        memory_id,
        text=body.text,
        metadata=body.metadata,
        ttl_s=body.ttl_seconds,
    )
    return MemoryOut.of(item)


@router.delete("/v1/memories/{memory_id}", status_code=204, responses=responses(404))
async def delete_memory(memory_id: Text, request: Request, principal: Writer) -> Response:
    await _memory(request).delete(principal.tenant_id, memory_id)
    return Response(status_code=204)
