"""The embedding seam: texts in, vectors out — what long-term memory searches by meaning.

An ``Embedder`` has one required method, :meth:`Embedder.embed`, and says its ``name`` (the
reference it was built from) and ``dimensions``. Embedders are addressed like chat models,
``provider:model?option=value``:

- ``wordllama:`` (the offline default): WordLlama's weights shipped inside its PyPI package,
  loaded from the package folder with downloads disabled (``?dim=64|128|256|512|1024``).
- ``test:`` (``test:64``): a deterministic hashed bag of words, for tests and the scripted world.
- ``openai:<model>?base_url=...``: any OpenAI-compatible ``/v1/embeddings`` endpoint.

A provider that reports tokens (OpenAI) is also a ``MeteredEmbedder``: :func:`embed_metered`
returns the vectors with their priced ``Usage``, so memory can count each call like a model call.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import re
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl

from shipyard.errors import ConfigError
from shipyard.models.base import Usage

Vector = list[float]
EmbedderFactory = Callable[[str, dict[str, str]], "Embedder"]

EMBEDDERS: dict[str, str] = {
    "wordllama": "shipyard.models.wordllama",
    "openai": "shipyard.models.openai_embedding",
    "test": "shipyard.models.embedding",
}
"""Reference prefix -> module with ``embedder_from_reference(spec, options)``."""

DEFAULT_EMBEDDER = "wordllama:"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of ``dimensions`` floats, one per text, in order."""

    @property
    def name(self) -> str:
        """The embedder reference (``provider:model``); stored with the vectors it made."""
        ...

    @property
    def dimensions(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> list[Vector]: ...


@runtime_checkable
class MeteredEmbedder(Embedder, Protocol):
    """An embedder whose provider reports the tokens each call used."""

    async def embed_with_usage(self, texts: Sequence[str]) -> tuple[list[Vector], Usage]: ...


async def embed_metered(embedder: Embedder, texts: Sequence[str]) -> tuple[list[Vector], Usage]:
    """The vectors and the call's priced usage (zero where the provider reports none)."""
    if isinstance(embedder, MeteredEmbedder):
        return await embedder.embed_with_usage(texts)
    return await embedder.embed(texts), Usage()


def create_embedder(ref: str) -> Embedder:
    """A new embedder for ``provider:model?k=v`` (``wordllama:``, ``test:64``, ``openai:...``)."""
    provider, sep, rest = ref.partition(":")
    if not sep or provider not in EMBEDDERS:
        raise ConfigError(
            f"embedder reference {ref!r} must look like provider:model with a provider of "
            f"{', '.join(sorted(EMBEDDERS))}"
        )
    spec, _, query = rest.partition("?")
    factory: EmbedderFactory = importlib.import_module(EMBEDDERS[provider]).embedder_from_reference
    return factory(spec, dict(parse_qsl(query, keep_blank_values=True)))


def normalize(vector: Sequence[float]) -> Vector:
    """``vector`` scaled to length 1 (cosine similarity is then a dot product)."""
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else [float(x) for x in vector]


_WORD = re.compile(r"\w+")


class HashEmbedder:
    """A deterministic embedder for tests: each lowercase word adds ±1 at a hashed index.

    Texts sharing words are close; the same text always gives the same vector, in any process.
    """

    def __init__(self, dimensions: int = 64) -> None:
        if dimensions < 8:
            raise ConfigError("test: embedder dimensions must be at least 8")
        self._dimensions = dimensions

    @property
    def name(self) -> str:
        return f"test:{self._dimensions}"

    @property
    def dimensions(self) -> int:
        return self._dimensions

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        return [self._one(text) for text in texts]

    def _one(self, text: str) -> Vector:
        vector = [0.0] * self._dimensions
        for word in _WORD.findall(text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "big") % self._dimensions
            vector[index] += 1.0 if digest[4] & 1 else -1.0
        return normalize(vector)


def embedder_from_reference(spec: str, options: dict[str, str]) -> HashEmbedder:
    """``test:`` or ``test:<dimensions>``."""
    if options:
        raise ConfigError(f"test:{spec}: takes no options")
    if not spec:
        return HashEmbedder()
    if not spec.isdigit():
        raise ConfigError(f"test:{spec}: the spec is a number of dimensions")
    return HashEmbedder(int(spec))
