"""``CachedModel``: an exact cache of model calls, per tenant, in the state store.

A call's key is a hash of the model, the messages, the tools offered and the parameters
(schema, temperature, max_tokens); its value, the final response, kept ``ttl_s``. A hit
answers without calling the model: its text as one delta, then the response with no usage
(nothing was spent), and an ``llm.cached`` event of the run with what it saved. The semantic
cache (``models.semantic_cache``), opt-in, answers calls that mean the same.

What the cache may serve comes from the run (``cache_scope``, which the cache's run hook,
``runtime.model_cache``, sets for each run): its tenant — keys are hash-tagged by tenant, so a
tenant never reads another's answers — and the names of the tools marked pure
(``@tool(pure=True)``) of its agent. A call that offers any other tool is neither served nor
stored: its answer may depend on the world, not only on its input. Outside a run with a
scope (a worker without the hook, a test), the model is called as is.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import structlog

from shipyard.errors import StoreError
from shipyard.models.base import ChatModel, ModelRequest, ModelResponse, StreamItem, TextDelta
from shipyard.models.wrapper import WrapperModel

log = structlog.get_logger(__name__)


class CacheStore(Protocol):
    """The part of the state store the cache uses (``stores.state.base.Values``)."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, *, ttl_s: float) -> None: ...


@dataclass(frozen=True, slots=True)
class CacheScope:
    """What the cache may serve the current run: its tenant's entries, for calls that offer
    only ``pure`` tools; ``emit`` puts the ``llm.cached`` event on the run's stream."""

    tenant_id: str
    pure: frozenset[str]
    emit: Callable[..., None]


cache_scope: ContextVar[CacheScope | None] = ContextVar("shipyard_cache_scope", default=None)


def cache_key(tenant_id: str, model: str, request: ModelRequest) -> str:
    """The entry of ``request`` to ``model`` for ``tenant_id`` (the trace header left out)."""
    body = request.model_dump(mode="json", exclude={"traceparent"})
    digest = hashlib.sha256(orjson.dumps([model, body], option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{{{tenant_id}}}:llm-cache:{digest}"


class CachedModel(WrapperModel):
    """Serves repeated calls from the state store; see the module docstring."""

    __slots__ = ("_store", "_ttl_s")

    def __init__(self, wrapped: ChatModel, store: CacheStore, ttl_s: float) -> None:
        super().__init__(wrapped)
        self._store = store
        self._ttl_s = ttl_s

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        scope = cache_scope.get()
        if scope is None or any(t.name not in scope.pure for t in request.tools):
            async for item in self.wrapped.stream(request):
                yield item
            return
        key = cache_key(scope.tenant_id, self.wrapped.name, request)
        found = await self._read(key)
        if found is not None:
            scope.emit("llm.cached", model=self.wrapped.name, cache="exact", **saved(found))
            async for item in replay(found):
                yield item
            return
        async for item in self.wrapped.stream(request):
            if isinstance(item, ModelResponse):
                await self._write(key, item)
            yield item

    async def _read(self, key: str) -> ModelResponse | None:
        try:
            raw = await self._store.get(key)
        except StoreError as exc:  # no cache is slower, not wrong
            log.warning("cannot read the model cache", error=exc.message)
            return None
        return None if raw is None else ModelResponse.model_validate_json(raw)

    async def _write(self, key: str, response: ModelResponse) -> None:
        try:
            await self._store.set(key, response.model_dump_json().encode(), ttl_s=self._ttl_s)
        except StoreError as exc:
            log.warning("cannot write the model cache", error=exc.message)


_NOTHING: dict[str, Any] = {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}


async def replay(found: ModelResponse) -> AsyncIterator[StreamItem]:
    """A cached answer as a stream: its text as one delta, then the response with no usage
    (nothing was spent)."""
    if found.message.content:
        yield TextDelta(text=found.message.content)
    yield found.model_copy(update={"usage": found.usage.model_copy(update=_NOTHING)})


def saved(found: ModelResponse) -> dict[str, Any]:
    """What answering from the cache saved: the ``llm.cached`` event's ``saved_*`` fields."""
    usage = found.usage
    return {
        "saved_usd": usage.cost_usd,
        "saved_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def model_cache(store: CacheStore, ttl_s: float) -> Callable[[ChatModel], ChatModel]:
    """The model wrapper the composition root hands the resolver."""

    def wrap(model: ChatModel) -> ChatModel:
        return CachedModel(model, store, ttl_s)

    return wrap
