"""Embedders: the deterministic test embedder, WordLlama from its package folder (offline), and
``openai:`` against the embeddings endpoint of a real llama.cpp server."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.errors import ConfigError, ModelError
from shipyard.models.embedding import (
    Embedder,
    HashEmbedder,
    MeteredEmbedder,
    create_embedder,
    embed_metered,
)
from shipyard.models.local import LlamaServer, gguf_path, start_llama_server
from shipyard.models.openai_embedding import OpenAIEmbedder
from tests.conftest import missing_service


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_the_test_embedder_is_deterministic_and_word_sensitive() -> None:
    embedder = create_embedder("test:32")
    assert isinstance(embedder, HashEmbedder) and isinstance(embedder, Embedder)
    assert (embedder.name, embedder.dimensions) == ("test:32", 32)
    one, again, near, far = await embedder.embed(
        ["the cat sat on the mat", "the cat sat on the mat", "a cat on a mat", "stock prices fell"]
    )
    assert one == again and len(one) == 32
    assert math.isclose(sum(x * x for x in one), 1.0)
    assert cosine(one, near) > cosine(one, far)
    vectors, usage = await embed_metered(embedder, ["x"])
    assert len(vectors) == 1 and usage.prompt_tokens == 0


@pytest.mark.parametrize(
    "ref", ["nope:x", "wordllama", "test:abc", "wordllama:other", "wordllama:?dim=7", "openai:"]
)
def test_bad_references_are_config_errors(ref: str) -> None:
    with pytest.raises(ConfigError):
        create_embedder(ref)


def test_an_unknown_openai_model_needs_its_dimensions() -> None:
    with pytest.raises(ConfigError, match="dimensions"):
        create_embedder("openai:my-embedder?base_url=http://127.0.0.1:1/v1")
    made = create_embedder("openai:my-embedder?base_url=http://127.0.0.1:1/v1&dimensions=8")
    assert made.dimensions == 8 and made.name == "openai:my-embedder"


async def test_wordllama_loads_its_shipped_weights_without_any_download(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # an empty cache: only the package folder has them
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = create_embedder("wordllama:?dim=128")
    assert embedder.dimensions == 128
    cat, kitten, market = await embedder.embed(
        ["my cat likes to sleep", "the kitten is sleeping", "interest rates and bond markets"]
    )
    assert len(cat) == 128
    assert cosine(cat, kitten) > cosine(cat, market)
    assert not (tmp_path / ".cache").exists()


@pytest.fixture(scope="module")
def embeddings_url() -> Iterator[str]:
    """A llama.cpp server (SmolLM2, in this process) serving ``/v1/embeddings``."""
    try:
        gguf_path()
    except ConfigError as exc:
        missing_service(str(exc))
    server: LlamaServer = start_llama_server(n_ctx=512, threads=1, embedding=True)
    try:
        yield server.base_url
    finally:
        server.close()


async def test_openai_embeddings_from_llamacpp_are_counted(embeddings_url: str) -> None:
    embedder = create_embedder(f"openai:smollm2?base_url={embeddings_url}&dimensions=576")
    assert isinstance(embedder, OpenAIEmbedder) and isinstance(embedder, MeteredEmbedder)
    try:
        vectors, usage = await embed_metered(embedder, ["hello there", "a much longer text here"])
        assert [len(v) for v in vectors] == [576, 576]
        assert math.isclose(sum(x * x for x in vectors[0]), 1.0, rel_tol=1e-5)
        assert usage.prompt_tokens > 0  # the server reports the tokens it read
        wrong = create_embedder(f"openai:smollm2?base_url={embeddings_url}&dimensions=8")
        assert isinstance(wrong, OpenAIEmbedder)
        with pytest.raises(ModelError, match="8 floats"):
            await wrong.embed(["x"])
        await wrong.aclose()
    finally:
        await embedder.aclose()


async def test_embedding_tokens_count_in_the_runs_usage(
    embeddings_url: str, tmp_path: Path
) -> None:
    from shipyard import Agent, Memory
    from shipyard.runtime.memory import MemoryHook, MemoryService
    from shipyard.stores.memory.sqlite import SqliteMemoryStore
    from shipyard.testing import ScriptedModel, run_agent

    embedder = create_embedder(f"openai:smollm2?base_url={embeddings_url}&dimensions=576")
    store = SqliteMemoryStore(str(tmp_path / "m.db"), embedder=embedder.name, dimensions=576)
    service = MemoryService(store, embedder)
    try:
        agent = Agent(name="a", model=ScriptedModel(["ok"]), memory=Memory(scope="agent"))
        result, events = await run_agent(
            agent, "what do you remember", run_hooks=[MemoryHook(service, {"a": agent})]
        )
        model_tokens = sum(e.data["prompt_tokens"] for e in events if e.type == "llm.response")
        assert service.embed_calls == 1 and service.embed_tokens > 0
        assert result.usage.prompt_tokens == model_tokens + service.embed_tokens
    finally:
        await service.close()
