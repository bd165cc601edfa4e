"""The model seam: messages in, streamed deltas and a final response out.

A ``ChatModel`` has one required method, :meth:`ChatModel.stream`. Providers (auth, HTTP client)
live apart from the wire format; wrappers (routing, retries, instrumentation) implement the same
protocol around another model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field


class _Msg(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SystemMessage(_Msg):
    role: Literal["system"] = "system"
    content: str


class UserMessage(_Msg):
    role: Literal["user"] = "user"
    content: str


class ToolCall(_Msg):
    """A model's request to run one tool; ``arguments`` is the raw JSON text the model wrote."""

    id: str
    name: str
    arguments: str = "{}"


class AssistantMessage(_Msg):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


class ToolMessage(_Msg):
    role: Literal["tool"] = "tool"
    tool_call_id: str
    name: str | None = None
    content: str


Message = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")
]


class ToolSpec(_Msg):
    """What the model is told about a tool."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class Usage(_Msg):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 10),
        )


class ModelRequest(_Msg):
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    response_schema: dict[str, Any] | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    traceparent: str | None = None
    """W3C trace context of this model call's span; HTTP providers send it as a header, so a
    model server that traces joins the run's trace."""


class TextDelta(_Msg):
    """A piece of answer text as the model streams it."""

    text: str


class ModelResponse(_Msg):
    """The complete answer of one model call; always the last item of a stream."""

    message: AssistantMessage
    usage: Usage = Usage()
    model: str = ""
    finish_reason: str | None = None


StreamItem = TextDelta | ModelResponse


@runtime_checkable
class ChatModel(Protocol):
    """A chat model: ``stream`` yields ``TextDelta``s, then exactly one ``ModelResponse``."""

    @property
    def name(self) -> str:
        """The model reference, ``provider:model``; used for pricing, metrics and records."""
        ...

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]: ...


async def complete(model: ChatModel, request: ModelRequest) -> ModelResponse:
    """Run a model call to its end and return only the final response."""
    final: ModelResponse | None = None
    async for item in model.stream(request):
        if isinstance(item, ModelResponse):
            final = item
    if final is None:
        from shipyard.errors import ModelError

        raise ModelError(f"model {model.name} ended its stream without a response")
    return final
