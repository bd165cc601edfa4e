"""The ``openai:`` adapter against a real OpenAI-compatible server: llama.cpp serving SmolLM2.

The server (``server_url``, from ``conftest.py``) runs in a child process for the whole module.
Every call uses temperature 0; no test asserts on the small model's wording.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import openai
import pytest

from shipyard.errors import ConfigError, ModelError
from shipyard.models.base import (
    AssistantMessage,
    ModelRequest,
    SystemMessage,
    TextDelta,
    ToolCall,
    ToolMessage,
    UserMessage,
)
from shipyard.models.openai import (
    ChunkAssembler,
    OpenAIChatModel,
    chat_request_body,
    from_reference,
)
from shipyard.models.registry import parse_reference
from tests.models.conftest import CLOCK, WEATHER, collect, final

pytestmark = pytest.mark.llamacpp


@pytest.fixture
async def model(server_url: str) -> AsyncIterator[OpenAIChatModel]:
    _, spec, options = parse_reference(f"openai:smollm2?base_url={server_url}&max_retries=0")
    model = from_reference(spec, options)
    yield model
    await model.aclose()


def ask(text: str, **fields: Any) -> ModelRequest:
    return ModelRequest(messages=(UserMessage(content=text),), temperature=0, **fields)


async def test_chat_ends_with_one_priced_response(model: OpenAIChatModel) -> None:
    response = final(await collect(model, ask("Say hello to Ada.", max_tokens=16)))

    assert model.name == "openai:smollm2"
    assert response.message.role == "assistant"
    assert response.message.content
    assert response.message.tool_calls == ()
    assert response.usage.prompt_tokens > 0
    assert response.usage.completion_tokens > 0
    assert response.usage.cost_usd == 0  # no price is registered for openai:smollm2
    assert response.finish_reason in {"stop", "length"}
    assert response.model


async def test_text_deltas_add_up_to_the_answer(model: OpenAIChatModel) -> None:
    items = await collect(model, ask("Tell me a short story about a boat.", max_tokens=24))

    deltas = [i.text for i in items if isinstance(i, TextDelta)]
    assert len(deltas) > 1
    assert "".join(deltas) == final(items).message.content


async def test_response_schema_constrains_the_output(model: OpenAIChatModel) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "color": {"type": "string", "enum": ["red", "green", "blue"]},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
        },
        "required": ["name", "color", "age"],
        "additionalProperties": False,
    }
    request = ask("Invent a person.", response_schema=schema, max_tokens=100)

    response = final(await collect(model, request))

    assert response.finish_reason == "stop"
    jsonschema.validate(json.loads(response.message.content or ""), schema)


async def test_tools_are_accepted_but_answered_in_text(model: OpenAIChatModel) -> None:
    """With ``tool_choice`` auto (all a ModelRequest can ask for), SmolLM2 answers in prose."""
    request = ask("What's the weather in Paris?", tools=(WEATHER, CLOCK), max_tokens=24)

    response = final(await collect(model, request))

    assert response.message.tool_calls == ()
    assert response.message.content


async def test_a_tool_round_trip_is_accepted(model: OpenAIChatModel) -> None:
    """Assistant tool calls and tool results reach the server in the wire format it parses."""
    call = ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')
    request = ModelRequest(
        messages=(
            SystemMessage(content="You answer questions about the weather."),
            UserMessage(content="What's the weather in Paris?"),
            AssistantMessage(tool_calls=(call,)),
            ToolMessage(tool_call_id="call_1", name="get_weather", content='{"sky": "sunny"}'),
        ),
        tools=(WEATHER,),
        temperature=0,
        max_tokens=16,
    )

    response = final(await collect(model, request))

    assert response.message.content
    assert response.usage.prompt_tokens > 0


async def test_streamed_tool_calls_are_assembled(server_url: str) -> None:
    """Tool calls as far as the server makes them for this model.

    llama.cpp only emits tool calls for SmolLM2 with ``tool_choice="required"`` and the answer
    prefilled with ``<tool_call>``, which ``ModelRequest`` cannot express; so the real stream is
    requested with the SDK and folded by the adapter's own assembler.
    """
    body = chat_request_body(
        ModelRequest(
            messages=(
                UserMessage(content="What's the weather in Paris?"),
                AssistantMessage(content="<tool_call>\n"),
            ),
            tools=(WEATHER, CLOCK),
            temperature=0,
            max_tokens=32,
        ),
        "smollm2",
    )
    assembler = ChunkAssembler()
    async with openai.AsyncOpenAI(base_url=server_url, api_key="x", max_retries=0) as client:
        stream = await client.chat.completions.create(
            **body, tool_choice="required", stream=True, stream_options={"include_usage": True}
        )
        async with stream:
            async for chunk in stream:
                assembler.feed(chunk)

    response = assembler.response("openai:smollm2")

    calls = response.message.tool_calls
    assert calls
    assert all(c.id and c.name in {"get_weather", "get_time"} for c in calls)
    assert len({c.id for c in calls}) == len(calls)
    assert isinstance(json.loads(calls[0].arguments), dict)
    assert response.usage.completion_tokens > 0


async def test_a_request_over_the_context_is_a_model_error(model: OpenAIChatModel) -> None:
    with pytest.raises(ModelError, match="openai:smollm2") as caught:
        await collect(model, ask("hello " * 3000, max_tokens=4))

    assert isinstance(caught.value.__cause__, openai.OpenAIError)


async def test_a_server_failing_mid_stream_is_a_model_error(model: OpenAIChatModel) -> None:
    """A prefilled tool call under ``tool_choice`` auto: llama.cpp's parser rejects the output
    after the stream has started (HTTP 200), which the SDK raises while iterating."""
    request = ModelRequest(
        messages=(
            UserMessage(content="What's the weather in Paris?"),
            AssistantMessage(content="<tool_call>\n"),
        ),
        tools=(WEATHER,),
        temperature=0,
        max_tokens=16,
    )

    with pytest.raises(ModelError, match="openai:smollm2") as caught:
        await collect(model, request)

    assert isinstance(caught.value.__cause__, openai.APIError)


async def test_a_closed_port_is_a_model_error() -> None:
    model = from_reference("smollm2", {"base_url": "http://127.0.0.1:9/v1", "max_retries": "0"})
    try:
        with pytest.raises(ModelError, match=r"openai:smollm2.*cannot reach") as caught:
            await collect(model, ask("hello"))
    finally:
        await model.aclose()

    assert isinstance(caught.value.__cause__, openai.APIConnectionError)


def test_the_wire_format() -> None:
    call = ToolCall(id="c1", name="get_weather", arguments='{"city": "Oslo"}')
    request = ModelRequest(
        messages=(
            UserMessage(content="weather?"),
            AssistantMessage(tool_calls=(call,)),
            ToolMessage(tool_call_id="c1", name="get_weather", content="rain"),
        ),
        tools=(WEATHER,),
        response_schema={"type": "object"},
    )

    body = chat_request_body(request, "m")

    assert body["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
            }
        ],
    }
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "c1", "content": "rain"}
    assert body["tools"][0]["function"]["parameters"] == WEATHER.parameters
    assert body["response_format"]["json_schema"] == {
        "name": "output",
        "schema": {"type": "object"},
        "strict": True,
    }
    assert "temperature" not in body
    assert "max_tokens" not in body


def test_unknown_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="known: api_key, api_key_env"):
        from_reference("gpt-4.1-mini", {"base_url": "http://x", "colour": "blue"})
    with pytest.raises(ConfigError, match="SHIPYARD_TEST_NO_SUCH_KEY"):
        from_reference("gpt-4.1-mini", {"api_key_env": "SHIPYARD_TEST_NO_SUCH_KEY"})
