"""The ``anthropic:`` adapter against a real Messages API server: llama.cpp serving SmolLM2.

llama.cpp's server answers ``/v1/messages`` as well as Chat Completions, translating to and from
the same chat template. The server (``server_url``, from ``conftest.py``) runs in a child process
for the whole module. Every call uses temperature 0; no test asserts on the small model's wording.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest

from shipyard.errors import ModelError
from shipyard.models.anthropic import (
    AnthropicChatModel,
    EventAssembler,
    from_reference,
    request_params,
)
from shipyard.models.base import (
    AssistantMessage,
    Message,
    ModelRequest,
    SystemMessage,
    TextDelta,
    ToolMessage,
    UserMessage,
)
from shipyard.models.registry import parse_reference
from tests.models.conftest import CLOCK, WEATHER, collect, final

pytestmark = pytest.mark.llamacpp

QUESTION = UserMessage(content="What's the weather in Paris?")


@pytest.fixture
def root_url(server_url: str) -> str:
    """Anthropic clients add ``/v1/messages`` to their base URL themselves."""
    return server_url.removesuffix("/v1")


@pytest.fixture
async def model(root_url: str) -> AsyncIterator[AnthropicChatModel]:
    _, spec, options = parse_reference(f"anthropic:smollm2?base_url={root_url}&max_retries=0")
    model = from_reference(spec, options)
    yield model
    await model.aclose()


def ask(*messages: Message, **fields: Any) -> ModelRequest:
    return ModelRequest(messages=messages, temperature=0, **fields)


async def test_chat_ends_with_one_response(model: AnthropicChatModel) -> None:
    response = final(await collect(model, ask(UserMessage(content="Say hi."), max_tokens=16)))

    assert model.name == "anthropic:smollm2"
    assert response.message.role == "assistant"
    assert response.message.content
    assert response.message.tool_calls == ()
    assert response.usage.prompt_tokens > 0
    assert response.usage.completion_tokens > 0
    assert response.usage.cost_usd == 0  # no price is registered for anthropic:smollm2
    assert response.finish_reason in {"stop", "length"}  # mapped from end_turn / max_tokens
    assert response.model


async def test_text_deltas_add_up_to_the_answer(model: AnthropicChatModel) -> None:
    request = ask(UserMessage(content="Tell me a short story about a boat."), max_tokens=24)

    items = await collect(model, request)

    deltas = [i.text for i in items if isinstance(i, TextDelta)]
    assert len(deltas) > 1
    assert "".join(deltas) == final(items).message.content


async def test_a_tool_round_trip(model: AnthropicChatModel, root_url: str) -> None:
    """The server's own ``tool_use`` blocks, answered with ``tool_result`` blocks.

    llama.cpp only makes SmolLM2 call a tool with ``tool_choice`` ``any`` and the answer
    prefilled with ``<tool_call>``, which ``ModelRequest`` cannot express; so the first turn is
    requested with the SDK and folded by the adapter's own assembler. The calls it yields then
    go back through the adapter with their results.
    """
    first = ask(QUESTION, AssistantMessage(content="<tool_call>\n"), tools=(WEATHER, CLOCK))
    params = request_params(first, "smollm2", max_tokens=32)
    assembler = EventAssembler()
    async with anthropic.AsyncAnthropic(base_url=root_url, api_key="x", max_retries=0) as client:
        events = await client.messages.create(**params, tool_choice={"type": "any"}, stream=True)
        async with events:
            async for event in events:
                assembler.feed(event)
    called = assembler.response("anthropic:smollm2")

    calls = called.message.tool_calls
    assert calls
    assert all(c.id and c.name in {"get_weather", "get_time"} for c in calls)
    assert len({c.id for c in calls}) == len(calls)
    assert all(isinstance(json.loads(c.arguments), dict) for c in calls)
    assert called.usage.completion_tokens > 0

    results = tuple(
        ToolMessage(tool_call_id=c.id, name=c.name, content='{"sky": "sunny"}') for c in calls
    )
    second = ask(
        SystemMessage(content="You answer questions about the weather."),
        QUESTION,
        AssistantMessage(tool_calls=calls),
        *results,
        tools=(WEATHER, CLOCK),
        max_tokens=16,
    )

    answer = final(await collect(model, second))

    assert answer.message.content
    assert answer.usage.prompt_tokens > called.usage.prompt_tokens  # the calls and results count


async def test_a_request_over_the_context_is_a_model_error(model: AnthropicChatModel) -> None:
    request = ask(UserMessage(content="hello " * 3000), max_tokens=4)

    with pytest.raises(ModelError, match=r"anthropic:smollm2.*HTTP 400") as caught:
        await collect(model, request)

    assert caught.value.details == {"status": 400}
    assert isinstance(caught.value.__cause__, anthropic.BadRequestError)


async def test_a_server_failing_mid_stream_is_a_model_error(model: AnthropicChatModel) -> None:
    """A prefilled tool call under ``tool_choice`` auto: llama.cpp's parser rejects the output
    after the stream has started (HTTP 200), and sends an error event the SDK raises."""
    prefilled = AssistantMessage(content="<tool_call>\n")
    request = ask(QUESTION, prefilled, tools=(WEATHER,), max_tokens=16)

    with pytest.raises(ModelError, match="anthropic:smollm2") as caught:
        await collect(model, request)

    assert isinstance(caught.value.__cause__, anthropic.APIStatusError)


async def test_a_closed_port_is_a_model_error() -> None:
    model = from_reference("smollm2", {"base_url": "http://127.0.0.1:9", "max_retries": "0"})
    try:
        with pytest.raises(ModelError, match=r"anthropic:smollm2.*cannot reach") as caught:
            await collect(model, ask(UserMessage(content="hello")))
    finally:
        await model.aclose()

    assert isinstance(caught.value.__cause__, anthropic.APIConnectionError)
