"""``wordllama:``: the offline default embedder, WordLlama's static token embeddings.

The PyPI package ships its default weights (``l2_supercat``) and tokenizer inside its own
folder; they are loaded from there with downloads disabled, so a server never reaches the
network for them. ``?dim=`` truncates the vectors (Matryoshka: 64 or 128; the shipped file holds
256, the default). Loading takes a few seconds: it happens on first use, in
a worker thread, once per process; embedding is CPU work, run off the event loop too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shipyard.errors import ConfigError
from shipyard.models.embedding import Vector, normalize

_DIMS = (64, 128, 256)


class WordLlamaEmbedder:
    """WordLlama from the weights in its package folder (no download)."""

    def __init__(self, dimensions: int = 256) -> None:
        if dimensions not in _DIMS:
            raise ConfigError(f"wordllama: dim must be one of {_DIMS} (the shipped weights)")
        self._dimensions = dimensions
        self._model: Any = None
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return f"wordllama:l2_supercat?dim={self._dimensions}"

    @property
    def dimensions(self) -> int:
        return self._dimensions

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        model = await self._loaded()
        rows = await asyncio.to_thread(model.embed, list(texts))
        return [normalize([float(x) for x in row]) for row in rows]

    async def _loaded(self) -> Any:
        async with self._lock:
            if self._model is None:
                self._model = await asyncio.to_thread(_load, self._dimensions)
        return self._model


def _load(dimensions: int) -> Any:
    try:
        import wordllama  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError("the wordllama: embedder needs the `wordllama` package") from exc
    folder = Path(wordllama.__file__).parent
    try:
        return wordllama.WordLlama.load(
            config="l2_supercat",
            dim=256,
            trunc_dim=None if dimensions == 256 else dimensions,
            cache_dir=folder,
            disable_download=True,
        )
    except FileNotFoundError as exc:
        raise ConfigError(f"wordllama: its shipped weights are missing: {exc}") from exc


def embedder_from_reference(spec: str, options: dict[str, str]) -> WordLlamaEmbedder:
    """``wordllama:`` or ``wordllama:l2_supercat``, with ``?dim=``."""
    if spec not in ("", "l2_supercat"):
        raise ConfigError(f"wordllama:{spec}: only the shipped l2_supercat model is available")
    unknown = sorted(set(options) - {"dim"})
    if unknown:
        raise ConfigError(f"wordllama:{spec}: unknown options {unknown}; known: dim")
    try:
        return WordLlamaEmbedder(int(options.get("dim", "256")))
    except ValueError as exc:
        raise ConfigError(f"wordllama:{spec}: dim must be a number") from exc
