"""A deterministic model for tests and benchmarks, behind the real ``ChatModel`` protocol.

``scripted:echo`` answers ``echo: <last user message>``. ``scripted:<file.json>`` replays a list of
steps. ``?delay_ms=N`` waits N ms before answering, to stand in for model latency.

Replay is per run, not per model instance: the step played is the number of assistant messages
since the last user message, so one scripted model can serve many concurrent runs.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shipyard.errors import ConfigError, ModelError
from shipyard.models.base import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    StreamItem,
    TextDelta,
    ToolCall,
    UserMessage,
)
from shipyard.models.prices import price


class ScriptedCall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)


class ScriptStep(BaseModel):
    """One model answer: final ``text``, or ``tool_calls`` to make, or ``error`` to raise."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = None
    tool_calls: list[ScriptedCall] = Field(default_factory=list)
    error: str | None = None


_STEPS = TypeAdapter(list[ScriptStep])


def count_tokens(text: str) -> int:
    """A cheap, deterministic token estimate (words), good enough for accounting in tests."""
    return len(text.split())


class ScriptedModel:
    """Plays ``steps`` in order within a run; with ``echo=True`` echoes the last user message."""

    def __init__(
        self,
        steps: Sequence[ScriptStep | str | dict[str, Any]] = (),
        *,
        echo: bool = False,
        delay_ms: float = 0,
        name: str = "scripted:test",
    ) -> None:
        if not echo and not steps:
            raise ConfigError("a scripted model needs steps, or echo=True")
        self._steps = [_as_step(s) for s in steps]
        self._echo = echo
        self._delay = delay_ms / 1000
        self._name = name
        # The latest requests, for tests to inspect; bounded, since a server keeps one model.
        self.requests: deque[ModelRequest] = deque(maxlen=1000)

    @property
    def name(self) -> str:
        return self._name

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        self.requests.append(request)
        if self._delay:
            await asyncio.sleep(self._delay)
        message = self._answer(request)
        if message.content:
            words = message.content.split(" ")
            for i, word in enumerate(words):
                yield TextDelta(text=word if i == 0 else " " + word)
        prompt = sum(count_tokens(_text(m)) for m in request.messages)
        usage = price(
            self._name, prompt, count_tokens(message.content or "") + len(message.tool_calls)
        )
        yield ModelResponse(
            message=message,
            usage=usage,
            model=self._name,
            finish_reason="tool_calls" if message.tool_calls else "stop",
        )

    def _answer(self, request: ModelRequest) -> AssistantMessage:
        if self._echo:
            return AssistantMessage(content=f"echo: {_last_user(request)}")
        index = _steps_taken(request)
        if index >= len(self._steps):
            raise ModelError(
                f"{self._name}: script exhausted after {len(self._steps)} steps (call {index + 1})"
            )
        step = self._steps[index]
        if step.error:
            raise ModelError(step.error)
        calls = tuple(
            ToolCall(
                id=f"call_{index}_{n}",
                name=c.name,
                arguments=c.arguments if isinstance(c.arguments, str) else json.dumps(c.arguments),
            )
            for n, c in enumerate(step.tool_calls)
        )
        return AssistantMessage(content=step.text, tool_calls=calls)


def _as_step(step: ScriptStep | str | dict[str, Any]) -> ScriptStep:
    if isinstance(step, ScriptStep):
        return step
    if isinstance(step, str):
        return ScriptStep(text=step)
    return ScriptStep.model_validate(step)


def _text(message: Any) -> str:
    content = getattr(message, "content", None)
    return content if isinstance(content, str) else ""


def _last_user(request: ModelRequest) -> str:
    for message in reversed(request.messages):
        if isinstance(message, UserMessage):
            return message.content
    return ""


def _steps_taken(request: ModelRequest) -> int:
    taken = 0
    for message in reversed(request.messages):
        if isinstance(message, UserMessage):
            break
        if isinstance(message, AssistantMessage):
            taken += 1
    return taken


def from_reference(spec: str, options: dict[str, str]) -> ScriptedModel:
    """Build from ``scripted:echo`` or ``scripted:<path to a JSON list of steps>``."""
    try:
        delay = float(options.pop("delay_ms", 0))
    except ValueError as exc:
        raise ConfigError(f"scripted:{spec}: delay_ms must be a number") from exc
    if options:
        raise ConfigError(f"scripted:{spec}: unknown options {sorted(options)}; known: delay_ms")
    name = f"scripted:{spec}"
    if spec == "echo":
        return ScriptedModel(echo=True, delay_ms=delay, name=name)
    path = Path(spec)
    try:
        steps = _STEPS.validate_json(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read script file: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"{name}: invalid script: {exc}") from exc
    return ScriptedModel(steps, delay_ms=delay, name=name)
