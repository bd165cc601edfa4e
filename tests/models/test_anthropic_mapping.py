"""The ``anthropic:`` adapter's wire format, as pure functions: no Anthropic server runs here."""

from __future__ import annotations

from typing import Any

import pytest
from anthropic.types import (
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    RawMessageStreamEvent,
)

from shipyard.errors import ConfigError
from shipyard.models.anthropic import (
    DEFAULT_MAX_TOKENS,
    EventAssembler,
    from_reference,
    request_params,
    system_prompt,
    tool_input,
    wire_messages,
    wire_tool,
)
from shipyard.models.base import (
    AssistantMessage,
    ModelRequest,
    SystemMessage,
    ToolCall,
    ToolMessage,
    ToolSpec,
    UserMessage,
)

WEATHER = ToolSpec(
    name="get_weather",
    description="Get the weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)
CALLS = (
    ToolCall(id="tu_1", name="get_weather", arguments='{"city": "Oslo"}'),
    ToolCall(id="tu_2", name="get_weather", arguments='{"city": "Rome"}'),
)
CONVERSATION = (
    SystemMessage(content="Be brief."),
    UserMessage(content="Weather in Oslo and Rome?"),
    AssistantMessage(content="Let me look.", tool_calls=CALLS),
    ToolMessage(tool_call_id="tu_1", name="get_weather", content="rain"),
    ToolMessage(tool_call_id="tu_2", name="get_weather", content="sun"),
    SystemMessage(content="Answer in English."),
    UserMessage(content="And quickly, please."),
)


def test_system_messages_become_one_prompt() -> None:
    assert system_prompt(CONVERSATION) == "Be brief.\n\nAnswer in English."
    assert system_prompt((UserMessage(content="hi"),)) is None


def _tool_use(id_: str, input_: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": id_, "name": "get_weather", "input": input_}


def test_tool_calls_and_results_become_blocks_in_alternating_turns() -> None:
    assert wire_messages(CONVERSATION) == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                _tool_use("tu_1", {"city": "Oslo"}),
                _tool_use("tu_2", {"city": "Rome"}),
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "tu_1", "content": "rain"},
                {"type": "tool_result", "tool_use_id": "tu_2", "content": "sun"},
                {"type": "text", "text": "And quickly, please."},
            ],
        },
    ]


def test_an_assistant_turn_of_only_tool_calls_has_no_empty_text() -> None:
    turns = wire_messages((UserMessage(content="hi"), AssistantMessage(tool_calls=CALLS[:1])))

    assert [b["type"] for b in turns[1]["content"]] == ["tool_use"]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [('{"a": 1}', {"a": 1}), ("", {}), ("{not json", {}), ("[1, 2]", {}), ("null", {})],
)
def test_tool_input_is_always_an_object(arguments: str, expected: dict[str, Any]) -> None:
    assert tool_input(arguments) == expected


def test_tools_carry_their_schema_as_input_schema() -> None:
    assert wire_tool(WEATHER) == {
        "name": "get_weather",
        "description": "Get the weather for a city",
        "input_schema": WEATHER.parameters,
    }


def test_request_params() -> None:
    schema = {"type": "object", "properties": {}, "additionalProperties": False}
    request = ModelRequest(
        messages=CONVERSATION, tools=(WEATHER,), response_schema=schema, temperature=0.2
    )

    params = request_params(request, "claude-haiku-4-5", DEFAULT_MAX_TOKENS)

    assert params["model"] == "claude-haiku-4-5"
    assert params["max_tokens"] == 4096
    assert params["system"] == "Be brief.\n\nAnswer in English."
    assert params["tools"] == [wire_tool(WEATHER)]
    assert params["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert params["extra_body"] == {"temperature": 0.2}
    assert "stream" not in params


def test_request_params_leave_out_what_the_request_does_not_set() -> None:
    request = ModelRequest(messages=(UserMessage(content="hi"),), max_tokens=64)

    params = request_params(request, "claude-haiku-4-5", DEFAULT_MAX_TOKENS)

    assert params["max_tokens"] == 64
    assert set(params) == {"model", "messages", "max_tokens"}


def _events(*raw: dict[str, Any]) -> list[RawMessageStreamEvent]:
    kinds: dict[str, Any] = {
        "message_start": RawMessageStartEvent,
        "content_block_start": RawContentBlockStartEvent,
        "content_block_delta": RawContentBlockDeltaEvent,
        "content_block_stop": RawContentBlockStopEvent,
        "message_delta": RawMessageDeltaEvent,
        "message_stop": RawMessageStopEvent,
    }
    return [kinds[e["type"]].model_validate(e) for e in raw]


STREAM = _events(
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5-20251001",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 20, "cache_read_input_tokens": 100, "output_tokens": 1},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let "}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "me."}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "tu_1", "name": "get_weather", "input": {}},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"city": '},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '"Oslo"}'},
    },
    {"type": "content_block_stop", "index": 1},
    {
        "type": "content_block_start",
        "index": 2,
        "content_block": {"type": "tool_use", "id": "tu_2", "name": "get_time", "input": {}},
    },
    {"type": "content_block_stop", "index": 2},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 42},
    },
    {"type": "message_stop"},
)


def test_stream_events_assemble_into_one_response() -> None:
    assembler = EventAssembler()

    texts = [assembler.feed(event) for event in STREAM]
    response = assembler.response("anthropic:claude-haiku-4-5")

    assert [t for t in texts if t] == ["Let ", "me."]
    assert response.message.content == "Let me."
    assert response.message.tool_calls == (
        ToolCall(id="tu_1", name="get_weather", arguments='{"city": "Oslo"}'),
        ToolCall(id="tu_2", name="get_time", arguments="{}"),
    )
    assert response.finish_reason == "tool_calls"
    assert response.model == "claude-haiku-4-5-20251001"
    assert response.usage.prompt_tokens == 120  # cache reads are input tokens too
    assert response.usage.completion_tokens == 42
    assert response.usage.cost_usd == pytest.approx((120 * 1.00 + 42 * 5.00) / 1_000_000)


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [("end_turn", "stop"), ("max_tokens", "length"), ("refusal", "content_filter")],
)
def test_stop_reasons_use_the_common_vocabulary(stop_reason: str, finish_reason: str) -> None:
    assembler = EventAssembler()
    (event,) = _events(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": 3},
        }
    )

    assembler.feed(event)

    assert assembler.response("anthropic:x").finish_reason == finish_reason


def test_references_are_checked() -> None:
    with pytest.raises(ConfigError, match="known: api_key, api_key_env"):
        from_reference("claude-haiku-4-5", {"temprature": "0"})
    with pytest.raises(ConfigError, match="max_tokens must be an integer"):
        from_reference("claude-haiku-4-5", {"max_tokens": "lots"})
    with pytest.raises(ConfigError, match="SHIPYARD_TEST_NO_SUCH_KEY"):
        from_reference("claude-haiku-4-5", {"api_key_env": "SHIPYARD_TEST_NO_SUCH_KEY"})


async def test_max_tokens_option_is_the_default() -> None:
    model = from_reference("claude-haiku-4-5", {"max_tokens": "512", "base_url": "http://x"})
    try:
        assert model.name == "anthropic:claude-haiku-4-5"
        assert model.max_tokens == 512
    finally:
        await model.aclose()
