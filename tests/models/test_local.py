"""``local:smollm2``: SmolLM2 run in this process by llama.cpp."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncGenerator, Iterator
from typing import cast

import jsonschema
import pytest

from shipyard.errors import ConfigError, ModelError
from shipyard.models import local
from shipyard.models._local_tools import arguments_body, pick_body
from shipyard.models.base import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    StreamItem,
    SystemMessage,
    TextDelta,
    ToolCall,
    ToolMessage,
    ToolSpec,
    UserMessage,
)
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


CALCULATOR = ToolSpec(
    name="calculator",
    description="Evaluate an arithmetic expression.\n\nMore text the pick does not need.",
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
        "additionalProperties": False,
    },
)
CLOCK = ToolSpec(
    name="current_time",
    description="The current time in a time zone.",
    parameters={"type": "object", "properties": {"timezone": {"type": "string"}}},
)


def tool_request(text: str, max_tokens: int | None = None) -> ModelRequest:
    return ModelRequest(
        messages=(
            SystemMessage(content="You do arithmetic and tell the time."),
            UserMessage(content=text),
        ),
        tools=(CALCULATOR, CLOCK),
        temperature=0,
        max_tokens=max_tokens,
    )


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
    with pytest.raises(ConfigError, match="known: n_ctx, threads, max_tokens"):
        local.from_reference("smollm2", {"gpu": "1"})
    with pytest.raises(ConfigError, match="integers"):
        local.from_reference("smollm2", {"n_ctx": "big"})
    with pytest.raises(ConfigError, match="integers"):
        local.from_reference("smollm2", {"max_tokens": "lots"})


# -- output cap -------------------------------------------------------------------------------


def test_a_call_without_a_cap_gets_the_default_of_256() -> None:
    model = local.from_reference("smollm2", {})
    uncapped = ModelRequest(messages=(UserMessage(content="hi"),))

    assert model.body(uncapped)["max_tokens"] == 256
    assert model.body(uncapped.model_copy(update={"max_tokens": 16}))["max_tokens"] == 16
    capped = local.from_reference("smollm2", {"max_tokens": "64"})
    assert capped.body(uncapped)["max_tokens"] == 64


async def test_the_reference_cap_stops_an_uncapped_answer(model: local.LocalChatModel) -> None:
    short = local.from_reference(model.model, {"max_tokens": "8"})  # shares the loaded model
    request = ModelRequest(messages=(UserMessage(content="Tell me a long story."),), temperature=0)

    response = (await collect(short, request))[-1]

    assert isinstance(response, ModelResponse)
    assert response.usage.completion_tokens == 8
    assert response.finish_reason == "length"


# -- tools --------------------------------------------------------------------------------------


def test_the_pick_shows_every_tool_and_constrains_the_answer_to_their_names() -> None:
    request = tool_request("What is 17*23?")

    body = pick_body(request)

    system = body["messages"][0]["content"]
    assert system.startswith("You do arithmetic and tell the time.")
    assert "- calculator: Evaluate an arithmetic expression." in system
    assert "- current_time: The current time in a time zone." in system
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["tool"]["enum"] == ["calculator", "current_time", "none"]
    assert body["messages"][1:] == [{"role": "user", "content": "What is 17*23?"}]


def test_the_arguments_are_constrained_by_the_tools_schema() -> None:
    body = arguments_body(tool_request("What is 17*23?"), CALCULATOR)

    assert body["response_format"]["json_schema"]["schema"] == CALCULATOR.parameters
    assert "calculator" in body["messages"][0]["content"]


async def test_the_model_calls_the_tool_the_question_needs(model: local.LocalChatModel) -> None:
    """The issue's example: 17*23 went to the model's own arithmetic (340), never a tool."""
    response = (await collect(model, tool_request("What is 17*23?")))[-1]

    assert isinstance(response, ModelResponse)
    assert response.finish_reason == "tool_calls"
    assert response.message.content is None
    (call,) = response.message.tool_calls
    assert call.name == "calculator"
    jsonschema.validate(json.loads(call.arguments), CALCULATOR.parameters)
    assert response.usage.prompt_tokens > 0


async def test_without_a_fitting_tool_the_answer_streams_as_text(
    model: local.LocalChatModel,
) -> None:
    items = await collect(model, tool_request("Tell me a joke.", max_tokens=16))

    *deltas, response = items
    assert isinstance(response, ModelResponse)
    assert response.message.tool_calls == ()
    assert deltas and all(isinstance(d, TextDelta) for d in deltas)
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == response.message.content
    plain = (await collect(model, ask("Tell me a joke.", max_tokens=16)))[-1]
    assert isinstance(plain, ModelResponse)
    assert response.usage.prompt_tokens > plain.usage.prompt_tokens  # the pick saw the tools


async def test_after_a_tool_result_the_model_answers_in_text(model: local.LocalChatModel) -> None:
    call = ToolCall(id="call_0", name="calculator", arguments='{"expression": "17*23"}')
    request = tool_request("What is 17*23?", max_tokens=16).model_copy(
        update={
            "messages": (
                *tool_request("What is 17*23?").messages,
                AssistantMessage(tool_calls=(call,)),
                ToolMessage(tool_call_id="call_0", name="calculator", content="391"),
            )
        }
    )

    response = (await collect(model, request))[-1]

    assert isinstance(response, ModelResponse)
    assert response.message.tool_calls == ()
    assert response.message.content


def test_the_pick_has_room_for_a_long_tool_name() -> None:
    """A name tokenised a character a token still fits: a pick cut short would drop the tool."""
    long_name = CLOCK.model_copy(update={"name": "x" * 60})
    body = pick_body(tool_request("hi").model_copy(update={"tools": (CALCULATOR, long_name)}))

    assert body["max_tokens"] >= 60 + len('{"tool": ""}')
