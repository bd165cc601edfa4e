"""``SemanticCache``: answers a model call from an earlier call that *means* the same (opt-in).

Only single-turn calls without tools are served or stored: system messages, then one user
message, no tool offered — an answer to a conversation or a tool loop depends on more than one
question's meaning. Everything else of the call (the model, the system messages, the
parameters) must be the same exactly: it names the *bucket* of answers, per tenant (keys are
hash-tagged by tenant: a tenant never reads another's answers). Within a bucket, the user
message is embedded (``Embedder``) and compared, by cosine similarity, with the questions of
the answers kept there; the closest at or above ``threshold`` answers.

Storage is the state store, where every key has a TTL. A bucket is a list per TTL window
(``window = now // ttl_s``), each item the question's vector and when it was asked; a call
reads the last ``entries`` items of the current and the previous window and ignores those
older than ``ttl_s``, so a bucket's lists stop growing when their window ends and expire
after two. The answer itself is a value of its own (read only on a hit), kept ``ttl_s``.

Hits are ``llm.cached`` events (``cache="semantic"``, with the ``similarity``), misses
``llm.cache_miss`` events (with the best similarity seen); the scope (tenant, emit) is the
run's ``cache_scope``, as for the exact cache (``models.cache``).
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import orjson
import structlog

from shipyard.errors import ShipyardError, StoreError
from shipyard.models.base import (
    ChatModel,
    ModelRequest,
    ModelResponse,
    StreamItem,
    SystemMessage,
    UserMessage,
)
from shipyard.models.cache import CacheScope, CacheStore, cache_scope, replay, saved
from shipyard.models.embedding import Embedder
from shipyard.models.wrapper import WrapperModel

log = structlog.get_logger(__name__)

_HEAD = struct.Struct("<d16s")
"""An item of a bucket: when it was asked (Unix time), the answer's id; its vector follows."""


class SemanticStore(CacheStore, Protocol):
    """The part of the state store the semantic cache uses (``Values`` and ``Lists``)."""

    async def append(self, key: str, *items: bytes, ttl_s: float) -> int: ...

    async def range(self, key: str, start: int = 0, end: int = -1) -> list[bytes]: ...


@dataclass(frozen=True, slots=True)
class SemanticSettings:
    """``SHIPYARD_SEMANTIC_CACHE_*``: the similarity that counts as the same question, how long
    an answer is kept, and how many recent questions of a bucket a call compares with."""

    threshold: float = 0.9
    ttl_s: float = 3600.0
    entries: int = 256


@dataclass(frozen=True, slots=True)
class _Lookup:
    bucket: str
    vector: np.ndarray
    best: float | None = None


def question(request: ModelRequest) -> str | None:
    """The user message of a call the semantic cache may serve, else None (see the module)."""
    if request.tools or not request.messages:
        return None
    *context, last = request.messages
    if not isinstance(last, UserMessage):
        return None
    if not all(isinstance(m, SystemMessage) for m in context):
        return None
    return last.content


def bucket_key(tenant_id: str, embedder: str, model: str, request: ModelRequest) -> str:
    """Everything of the call but its question, which must match exactly, as a key prefix."""
    body = request.model_dump(mode="json", exclude={"traceparent"})
    body["messages"] = body["messages"][:-1]
    digest = hashlib.sha256(orjson.dumps([model, embedder, body], option=orjson.OPT_SORT_KEYS))
    return f"{{{tenant_id}}}:llm-sem:{digest.hexdigest()}"


class SemanticCache(WrapperModel):
    """Serves calls similar to earlier ones from the state store; see the module docstring."""

    __slots__ = ("_clock", "_embedder", "_settings", "_store")

    def __init__(
        self,
        wrapped: ChatModel,
        store: SemanticStore,
        embedder: Embedder,
        settings: SemanticSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(wrapped)
        self._store = store
        self._embedder = embedder
        self._settings = settings
        self._clock = clock

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        scope = cache_scope.get()
        text = None if scope is None else question(request)
        lookup = None if scope is None or text is None else await self._lookup(scope, text, request)
        if scope is None or lookup is None:
            stream = self.wrapped.stream(request)
        elif isinstance(lookup, _Lookup):
            stream = self._miss(scope, lookup, request)
        else:
            stream = self._hit(scope, *lookup)
        async for item in stream:
            yield item

    def _hit(
        self, scope: CacheScope, found: ModelResponse, similarity: float
    ) -> AsyncIterator[StreamItem]:
        name, similarity = self.wrapped.name, round(similarity, 4)
        scope.emit(
            "llm.cached", model=name, cache="semantic", similarity=similarity, **saved(found)
        )
        return replay(found)

    async def _miss(
        self, scope: CacheScope, lookup: _Lookup, request: ModelRequest
    ) -> AsyncIterator[StreamItem]:
        best = None if lookup.best is None else round(lookup.best, 4)
        scope.emit("llm.cache_miss", model=self.wrapped.name, cache="semantic", similarity=best)
        async for item in self.wrapped.stream(request):
            if isinstance(item, ModelResponse):
                await self._write(lookup, item)
            yield item

    async def _lookup(
        self, scope: CacheScope, text: str, request: ModelRequest
    ) -> tuple[ModelResponse, float] | _Lookup | None:
        """A hit (the answer, its similarity), a miss (what to store under), or None when the
        cache cannot be used now (the store or the embedder failed: slower, not wrong)."""
        bucket = bucket_key(scope.tenant_id, self._embedder.name, self.wrapped.name, request)
        try:
            vectors, items = await asyncio.gather(
                self._embedder.embed([text]), self._recent(bucket)
            )
        except ShipyardError as exc:
            log.warning("cannot look the semantic cache up", error=exc.message)
            return None
        vector = np.asarray(vectors[0], dtype="<f4")
        norm = float(np.linalg.norm(vector))
        vector = vector / norm if norm > 0 else vector
        best, answer = self._closest(vector, items)
        if best is not None and best >= self._settings.threshold and answer is not None:
            found = await self._read(f"{bucket}:a:{answer}")
            if found is not None:
                return found, best
        return _Lookup(bucket, vector, best)

    def _closest(self, vector: np.ndarray, items: Sequence[bytes]) -> tuple[float | None, str]:
        """The best similarity of the live items and the id of its answer."""
        oldest = self._clock() - self._settings.ttl_s
        size = _HEAD.size + 4 * vector.shape[0]
        live = [i for i in items if len(i) == size and _HEAD.unpack_from(i)[0] > oldest]
        if not live:
            return None, ""
        matrix = np.frombuffer(b"".join(i[_HEAD.size :] for i in live), dtype="<f4")
        scores = matrix.reshape(len(live), vector.shape[0]) @ vector
        index = int(np.argmax(scores))
        return float(scores[index]), uuid.UUID(bytes=_HEAD.unpack_from(live[index])[1]).hex

    async def _recent(self, bucket: str) -> list[bytes]:
        """The last ``entries`` items of the previous window's list, then of this one's."""
        window = int(self._clock() // self._settings.ttl_s)
        count = self._settings.entries
        lists = await asyncio.gather(
            *(self._store.range(f"{bucket}:w{w}", -count, -1) for w in (window - 1, window))
        )
        return [item for found in lists for item in found]

    async def _read(self, key: str) -> ModelResponse | None:
        try:
            raw = await self._store.get(key)
        except StoreError as exc:
            log.warning("cannot read the semantic cache", error=exc.message)
            return None
        return None if raw is None else ModelResponse.model_validate_json(raw)

    async def _write(self, lookup: _Lookup, response: ModelResponse) -> None:
        """The answer first, then its question in the current window's list."""
        now, ttl_s = self._clock(), self._settings.ttl_s
        answer = uuid.uuid4()
        item = _HEAD.pack(now, answer.bytes) + lookup.vector.astype("<f4").tobytes()
        try:
            body = response.model_dump_json().encode()
            await self._store.set(f"{lookup.bucket}:a:{answer.hex}", body, ttl_s=ttl_s)
            await self._store.append(f"{lookup.bucket}:w{int(now // ttl_s)}", item, ttl_s=2 * ttl_s)
        except StoreError as exc:
            log.warning("cannot write the semantic cache", error=exc.message)


def semantic_cache(
    store: SemanticStore, embedder: Embedder, settings: SemanticSettings
) -> Callable[[ChatModel], ChatModel]:
    """The model wrapper the composition root hands the resolver."""

    def wrap(model: ChatModel) -> ChatModel:
        return SemanticCache(model, store, embedder, settings)

    return wrap
