"""The scripted model: echo, script files, delays, and prices on every call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipyard.errors import ConfigError, ModelError
from shipyard.models.base import ModelRequest, UserMessage, complete
from shipyard.models.prices import price
from shipyard.models.registry import create_model, parse_reference
from shipyard.models.scripted import from_reference


def ask(text: str) -> ModelRequest:
    return ModelRequest(messages=(UserMessage(content=text),))


async def test_echo_answers_the_last_user_message() -> None:
    response = await complete(create_model("scripted:echo"), ask("hello world"))
    assert response.message.content == "echo: hello world"
    assert response.usage.prompt_tokens == 2 and response.usage.completion_tokens == 3


async def test_a_script_file_replays_answers_and_tool_calls(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps([{"tool_calls": [{"name": "add", "arguments": {"a": 1}}]}, {"text": "done"}])
    )
    model = from_reference(str(script), {})
    first = await complete(model, ask("go"))
    assert [(c.name, json.loads(c.arguments)) for c in first.message.tool_calls] == [
        ("add", {"a": 1})
    ]
    second = await complete(
        model, ModelRequest(messages=(UserMessage(content="go"), first.message))
    )
    assert second.message.content == "done"
    with pytest.raises(ModelError, match="script exhausted"):
        await complete(
            model,
            ModelRequest(messages=(UserMessage(content="go"), first.message, second.message)),
        )


def test_options_are_checked(tmp_path: Path) -> None:
    assert from_reference("echo", {"delay_ms": "50"})._delay == 0.05
    with pytest.raises(ConfigError, match="delay_ms must be a number"):
        from_reference("echo", {"delay_ms": "soon"})
    with pytest.raises(ConfigError, match="unknown options"):
        from_reference("echo", {"speed": "1"})
    with pytest.raises(ConfigError, match="cannot read script file"):
        from_reference(str(tmp_path / "missing.json"), {})
    (tmp_path / "bad.json").write_text('[{"txt": "typo"}]')
    with pytest.raises(ConfigError, match="invalid script"):
        from_reference(str(tmp_path / "bad.json"), {})


def test_references_are_parsed_or_refused() -> None:
    assert parse_reference("scripted:echo?delay_ms=5") == ("scripted", "echo", {"delay_ms": "5"})
    for bad in ("echo", "nope:model", "openai:"):
        with pytest.raises(ConfigError):
            parse_reference(bad)


def test_calls_are_priced_from_the_table() -> None:
    usage = price("openai:gpt-4.1-mini", 1_000_000, 500_000)
    assert usage.cost_usd == pytest.approx(0.40 + 0.80)
    assert price("openai:unknown-model", 1000, 1000).cost_usd == 0.0
