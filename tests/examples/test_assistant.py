"""The example assistant's tools do real work, safely."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from examples.assistant import app, calculator, current_time, notes


async def call(tool, **arguments):  # type: ignore[no-untyped-def]
    return await tool.call(json.dumps(arguments), default_timeout_s=5)


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("(2 + 3) * 4", "20"),
        ("2 ** 10 + 1 / 4", "1024.25"),
        ("-7 // 2", "-4"),
        ("round(pi, 2)", "3.14"),
    ],
)
async def test_calculator_evaluates_arithmetic(expression: str, value: str) -> None:
    result = await call(calculator, expression=expression)
    assert result.ok and result.content == value


@pytest.mark.parametrize(
    "expression",
    ["__import__('os').system('true')", "open('/etc/passwd')", "9 ** 9 ** 9", "1 +", "x" * 300],
)
async def test_calculator_refuses_what_is_not_safe_arithmetic(expression: str) -> None:
    result = await call(calculator, expression=expression)
    assert not result.ok and result.error_kind == "retry"


async def test_current_time_honours_the_time_zone() -> None:
    paris = await call(current_time, timezone="Europe/Paris")
    assert paris.ok and datetime.fromisoformat(paris.content).utcoffset() is not None
    assert (await call(current_time, timezone="Mars/Olympus")).error_kind == "retry"


async def test_notes_save_read_and_list() -> None:
    assert (await call(notes, action="save", title="milk", text="buy 2 litres")).ok
    assert (await call(notes, action="read", title="milk")).content == "buy 2 litres"
    assert "milk" in (await call(notes, action="list")).content
    assert (await call(notes, action="burn")).error_kind == "retry"


def test_the_app_serves_assistant_and_echo() -> None:
    assert set(app.agents) == {"assistant", "echo"}
    assert {s.name for s in app.agents["assistant"].tool_specs} == {
        "calculator", "current_time", "notes",
    }  # fmt: skip


def test_the_assistant_leaves_the_output_cap_to_its_model() -> None:
    """``local:smollm2`` caps an uncapped call at 256 tokens; the example used to ask for 512."""
    assert app.agents["assistant"].max_tokens is None
