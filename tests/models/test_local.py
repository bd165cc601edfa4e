"""``local:smollm2``: SmolLM2 run in this process by llama.cpp."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Iterator
from typing import cast

import pytest

from shipyard.errors import ConfigError, ModelError
from shipyard.models import local
from shipyard.models.base import ModelRequest, ModelResponse, StreamItem, TextDelta, UserMessage
from shipyard.models.registry import parse_reference

pytestmark = pytest.mark.llamacpp


@pytest.fixture(scope="module")
def model() -> Iterator[local.LocalChatModel]:
    """One model for the module; its server is dropped (stopped and joined) at the end."""
    try:
        local.gguf_path()
    except ConfigError as exc:
        if os.environ.get("SHIPYARD_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{exc} (SHIPYARD_REQUIRE_SERVICES=1)")
        pytest.skip(str(exc))
    _, spec, options = parse_reference("local:smollm2?n_ctx=2048&threads=2")
    yield local.from_reference(spec, options)
    local.unload()


def ask(text: str, max_tokens: int = 16) -> ModelRequest:
    return ModelRequest(messages=(UserMessage(content=text),), temperature=0, max_tokens=max_tokens)


async def collect(model: local.LocalChatModel, request: ModelRequest) -> list[StreamItem]:
    return [item async for item in model.stream(request)]


async def test_streams_deltas_then_one_response(model: local.LocalChatModel) -> None:
    items = await collect(model, ask("Tell me a short story about a boat."))

    *deltas, response = items
    assert isinstance(response, ModelResponse)
    assert len(deltas) > 1
    assert all(isinstance(d, TextDelta) for d in deltas)
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == response.message.content
    assert model.name == "local:smollm2"
    assert response.usage.prompt_tokens > 0
    assert 0 < response.usage.completion_tokens <= 16
    assert response.usage.cost_usd == 0
    assert response.finish_reason in {"stop", "length"}


async def test_concurrent_calls_both_complete(model: local.LocalChatModel) -> None:
    first, second = await asyncio.gather(
        collect(model, ask("Name a colour.")), collect(model, ask("Name a fruit."))
    )

    for items in (first, second):
        assert isinstance(items[-1], ModelResponse)
        assert items[-1].message.content
        assert items[-1].usage.completion_tokens > 0


async def test_response_schema_is_enforced(model: local.LocalChatModel) -> None:
    schema = {
        "type": "object",
        "properties": {"color": {"type": "string", "enum": ["red", "green", "blue"]}},
        "required": ["color"],
        "additionalProperties": False,
    }
    request = ask("Pick a colour.", max_tokens=32).model_copy(update={"response_schema": schema})

    *_, response = await collect(model, request)

    assert isinstance(response, ModelResponse)
    assert response.message.content is not None
    assert response.message.content.replace(" ", "").replace("\n", "") in {
        '{"color":"red"}',
        '{"color":"green"}',
        '{"color":"blue"}',
    }


async def test_leaving_a_stream_early_frees_the_model(model: local.LocalChatModel) -> None:
    async with asyncio.timeout(30):
        stream = cast(AsyncGenerator[StreamItem, None], model.stream(ask("Tell a story.", 400)))
        async for item in stream:
            assert isinstance(item, TextDelta)
            break
        await stream.aclose()

        items = await collect(model, ask("Say hi.", max_tokens=4))

    assert isinstance(items[-1], ModelResponse)


async def test_a_request_over_the_context_is_a_model_error(model: local.LocalChatModel) -> None:
    with pytest.raises(ModelError, match=r"local:smollm2.*context"):
        await collect(model, ask("hello " * 3000, max_tokens=4))


def test_references_are_checked() -> None:
    with pytest.raises(ConfigError, match="known: smollm2"):
        local.from_reference("llama-70b", {})
    with pytest.raises(ConfigError, match="known: n_ctx, threads"):
        local.from_reference("smollm2", {"gpu": "1"})
    with pytest.raises(ConfigError, match="integers"):
        local.from_reference("smollm2", {"n_ctx": "big"})
