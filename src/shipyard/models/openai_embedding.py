"""``openai:<model>``: embeddings from any OpenAI-compatible ``/v1/embeddings`` endpoint.

Options as for ``openai:`` chat models (``base_url``, ``api_key_env``, ``timeout``,
``max_retries``; the provider and its error mapping are shared), plus ``dimensions``: needed for
models this module does not know (a llama.cpp or vLLM server's), and sent to the API for the
``text-embedding-3-*`` models, which can shorten their vectors. Each call's usage is read from
the response and priced (``shipyard.models.prices``).
"""

from __future__ import annotations

from collections.abc import Sequence

import openai

from shipyard.errors import ConfigError, ModelError
from shipyard.models._provider import translate_errors
from shipyard.models.base import Usage
from shipyard.models.embedding import Vector, normalize
from shipyard.models.openai import _ERRORS, OpenAIProvider
from shipyard.models.prices import price

KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class OpenAIEmbedder:
    """An embeddings model behind the OpenAI SDK; vectors are normalized to length 1."""

    def __init__(self, model_name: str, provider: OpenAIProvider, dimensions: int) -> None:
        self.model_name = model_name
        self.provider = provider
        self._dimensions = dimensions

    @property
    def name(self) -> str:
        return f"openai:{self.model_name}"

    @property
    def dimensions(self) -> int:
        return self._dimensions

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        vectors, _ = await self.embed_with_usage(texts)
        return vectors

    async def embed_with_usage(self, texts: Sequence[str]) -> tuple[list[Vector], Usage]:
        if not texts:
            return [], Usage()
        shorten = self._dimensions if self._shortens() else openai.omit
        with translate_errors(self.name, _ERRORS):
            answer = await self.provider.client.embeddings.create(
                model=self.model_name,
                input=list(texts),
                encoding_format="float",
                dimensions=shorten,
            )
        rows = sorted(answer.data, key=lambda row: row.index)
        if len(rows) != len(texts) or any(len(r.embedding) != self._dimensions for r in rows):
            raise ModelError(
                f"{self.name}: expected {len(texts)} vectors of {self._dimensions} floats"
            )
        tokens = answer.usage.prompt_tokens if answer.usage is not None else 0
        return [normalize(row.embedding) for row in rows], price(self.name, tokens, 0)

    def _shortens(self) -> bool:
        return self.model_name.startswith("text-embedding-3")

    async def aclose(self) -> None:
        await self.provider.close()


def embedder_from_reference(spec: str, options: dict[str, str]) -> OpenAIEmbedder:
    """Build ``openai:<model>?dimensions=N&base_url=...``."""
    if not spec:
        raise ConfigError(
            "openai: embedder reference needs a model, e.g. openai:text-embedding-3-small"
        )
    options = dict(options)
    given = options.pop("dimensions", None)
    try:
        dimensions = int(given) if given else KNOWN_DIMENSIONS.get(spec, 0)
    except ValueError as exc:
        raise ConfigError(f"openai:{spec}: dimensions must be a number") from exc
    if dimensions < 1:
        raise ConfigError(f"openai:{spec}: unknown model; give its vector size as ?dimensions=N")
    return OpenAIEmbedder(spec, OpenAIProvider.from_options(options), dimensions)
