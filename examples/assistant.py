"""The example app: an ``assistant`` with real tools, and an ``echo`` agent for smoke tests.

Serve it with ``make run`` (or ``shipyard serve --app examples.assistant:app``).
"""

from __future__ import annotations

import ast
import operator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from simpleeval import SimpleEval, safe_add, safe_mult, safe_power

import shipyard
from shipyard import ModelRetry, tool

_evaluator = SimpleEval(
    operators={
        ast.Add: safe_add,
        ast.Sub: operator.sub,
        ast.Mult: safe_mult,
        ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv,
        ast.Mod: operator.mod,
        ast.Pow: safe_power,
        ast.USub: operator.neg,
        ast.UAdd: operator.pos,
    },
    functions={"abs": abs, "round": round, "min": min, "max": max},
    names={"pi": 3.141592653589793, "e": 2.718281828459045},
)


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly as written.

    Args:
        expression: Arithmetic with + - * / // % ** and parentheses, e.g. "(2 + 3) * 4".
    """
    if len(expression) > 200:
        raise ModelRetry("expression too long; split it into smaller steps")
    try:
        value = _evaluator.eval(expression)
    except Exception as exc:
        raise ModelRetry(f"cannot evaluate {expression!r}: {exc}") from exc
    if isinstance(value, float) and abs(value) > 1e300:
        raise ModelRetry("result too large")
    return str(value)


@tool
def current_time(timezone: str = "UTC") -> str:
    """The current date and time.

    Args:
        timezone: An IANA time zone name such as "Europe/Paris".
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ModelRetry(f"unknown time zone {timezone!r}") from exc
    return datetime.now(UTC).astimezone(zone).isoformat(timespec="seconds")


_notes: dict[str, str] = {}


@tool
async def notes(action: str, title: str = "", text: str = "") -> str:
    """Keep short notes for the user during this server's life.

    Args:
        action: One of "save", "read", "list".
        title: The note's title (for save and read).
        text: The note's text (for save).
    """
    if action == "save":
        if not title:
            raise ModelRetry("save needs a title")
        _notes[title] = text
        return f"saved {title!r}"
    if action == "read":
        return _notes.get(title, f"no note titled {title!r}")
    if action == "list":
        return ", ".join(sorted(_notes)) or "no notes yet"
    raise ModelRetry('action must be "save", "read" or "list"')


assistant = shipyard.Agent(
    name="assistant",
    description="A helpful assistant with a calculator, a clock and a notepad.",
    instructions=(
        "You are a concise, helpful assistant. Use the calculator for arithmetic, "
        "current_time for dates and times, and notes to remember things the user asks you to."
    ),
    tools=[calculator, current_time, notes],
    max_steps=6,
)

echo = shipyard.Agent(
    name="echo",
    description="Answers 'echo: <your message>' (scripted model, no LLM).",
    model="scripted:echo",
)

app = shipyard.App(agents=[assistant, echo])
