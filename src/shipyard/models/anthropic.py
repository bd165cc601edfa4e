"""Anthropic Messages API models.

``anthropic:<model>?base_url=...&api_key_env=...&timeout=...&max_retries=...&max_tokens=...``.
Without options the SDK's defaults apply (``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL``); without
any key a placeholder is sent, so Anthropic-compatible local servers work and the API answers 401;
``max_tokens``, which the API requires, defaults to 4096 when a request sets none.

The provider (:class:`AnthropicProvider`) owns the client and its auth; the model
(:class:`AnthropicChatModel`) owns the wire format, which is pure functions
(:func:`request_params`, :class:`EventAssembler`) tested without a server.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

try:
    import anthropic
    from anthropic.types import RawMessageStreamEvent, Usage
except ImportError as exc:  # pragma: no cover - anthropic is a core dependency today
    raise ImportError("the anthropic: model provider needs the `anthropic` package") from exc

from shipyard.errors import ConfigError
from shipyard.models._provider import (
    PLACEHOLDER_API_KEY,
    SdkErrors,
    check_options,
    client_settings,
    named_api_key,
    trace_headers,
    translate_errors,
)
from shipyard.models._streaming import PartialCall, StreamAssembly
from shipyard.models.base import (
    AssistantMessage,
    Message,
    ModelRequest,
    StreamItem,
    SystemMessage,
    TextDelta,
    ToolMessage,
    ToolSpec,
)

DEFAULT_MAX_TOKENS = 4096
_OPTIONS = ("api_key", "api_key_env", "base_url", "max_retries", "max_tokens", "timeout")
# Stop reasons in the Chat Completions vocabulary, so records read the same for every provider.
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


# --- wire format (pure) -------------------------------------------------------------------------


def system_prompt(messages: Sequence[Message]) -> str | None:
    """All system messages as one prompt: the API takes it apart from the turns."""
    parts = [m.content for m in messages if isinstance(m, SystemMessage)]
    return "\n\n".join(parts) if parts else None


def _blocks(message: Message) -> list[dict[str, Any]]:
    if isinstance(message, ToolMessage):
        return [
            {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content}
        ]
    blocks: list[dict[str, Any]] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    if isinstance(message, AssistantMessage):
        blocks += [
            {"type": "tool_use", "id": c.id, "name": c.name, "input": tool_input(c.arguments)}
            for c in message.tool_calls
        ]
    return blocks


def tool_input(arguments: str) -> dict[str, Any]:
    """A call's JSON text as the object the API wants; text that is not one becomes ``{}``
    (the tool result already told the model its arguments were invalid)."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def wire_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The conversation as alternating user/assistant turns.

    Tool results travel as ``tool_result`` blocks in a user turn; consecutive messages of one
    role (several tool results, then a user message) merge into one turn.
    """
    turns: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            continue
        role = "assistant" if isinstance(message, AssistantMessage) else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def wire_tool(tool: ToolSpec) -> dict[str, Any]:
    return {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}


def request_params(request: ModelRequest, model: str, max_tokens: int) -> dict[str, Any]:
    """Keyword arguments of ``messages.create`` for ``request`` (without ``stream``)."""
    params: dict[str, Any] = {
        "model": model,
        "messages": wire_messages(request.messages),
        "max_tokens": request.max_tokens or max_tokens,
    }
    system = system_prompt(request.messages)
    if system is not None:
        params["system"] = system
    if request.tools:
        params["tools"] = [wire_tool(t) for t in request.tools]
    if request.response_schema is not None:
        params["output_config"] = {
            "format": {"type": "json_schema", "schema": request.response_schema}
        }
    if request.temperature is not None:
        # SDK 1.x dropped sampling arguments from its signature (newer models reject them);
        # the API still takes them from older models, so they travel in the raw body.
        params["extra_body"] = {"temperature": request.temperature}
    return params


def _prompt_tokens(usage: Any) -> int:
    """Input tokens, cached ones included (the usage object reports them apart)."""
    return sum(
        getattr(usage, name, None) or 0
        for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )


@dataclass
class EventAssembler(StreamAssembly):
    """Folds stream events into one response; :meth:`feed` returns the text each one adds.

    Tool calls arrive as ``tool_use`` blocks keyed by ``index``, their input as JSON pieces.
    """

    def feed(self, event: RawMessageStreamEvent) -> str:
        if event.type == "message_start":
            self.model = event.message.model
            self._count(event.message.usage)
        elif event.type == "content_block_start" and event.content_block.type == "tool_use":
            block = event.content_block
            self._calls[event.index] = PartialCall(block.id, block.name)
            if block.input:  # normally {} with the JSON streamed after; kept if sent whole
                self._calls[event.index].arguments.append(json.dumps(block.input))
        elif event.type == "content_block_delta":
            if event.delta.type == "text_delta":
                self._text.append(event.delta.text)
                return event.delta.text
            if event.delta.type == "input_json_delta" and event.index in self._calls:
                self._calls[event.index].arguments.append(event.delta.partial_json)
        elif event.type == "message_delta":
            reason = event.delta.stop_reason
            self.finish_reason = _FINISH.get(reason, reason) if reason else self.finish_reason
            self._count(event.usage)
        return ""

    def _count(self, usage: Usage | Any) -> None:
        """Usage counts are cumulative: later events replace earlier ones."""
        if getattr(usage, "input_tokens", None) is not None:
            self.prompt_tokens = _prompt_tokens(usage)
        self.completion_tokens = usage.output_tokens or self.completion_tokens


# --- provider and model -------------------------------------------------------------------------


def _read_status(exc: anthropic.APIStatusError) -> tuple[int, str, dict[str, Any]]:
    """The message of an ``{"error": {"message": ...}}`` body, else the SDK's own."""
    error = exc.body.get("error") if isinstance(exc.body, dict) else None
    detail = error.get("message") if isinstance(error, dict) else None
    return exc.status_code, detail or exc.message, {"status": exc.status_code}


_ERRORS = SdkErrors(
    status=anthropic.APIStatusError,
    timeout=anthropic.APITimeoutError,
    connection=anthropic.APIConnectionError,
    base=anthropic.AnthropicError,
    read_status=_read_status,
)


@dataclass(frozen=True, slots=True)
class AnthropicProvider:
    """Owns the HTTP client and its auth; one per model reference, shared by its calls."""

    client: anthropic.AsyncAnthropic

    @classmethod
    def from_options(cls, options: dict[str, str]) -> AnthropicProvider:
        api_key = options.get("api_key") or named_api_key("anthropic", options)
        settings = client_settings("anthropic", options)
        if api_key is not None:
            settings["api_key"] = api_key
        elif not os.environ.get("ANTHROPIC_API_KEY") and not os.environ.get("ANTHROPIC_AUTH_TOKEN"):
            # compatible local servers ignore the key; the real API answers 401
            settings["api_key"] = PLACEHOLDER_API_KEY
        return cls(anthropic.AsyncAnthropic(**settings))

    async def close(self) -> None:
        await self.client.close()


class AnthropicChatModel:
    """A Messages API model, always streamed."""

    def __init__(
        self, model_name: str, provider: AnthropicProvider, *, max_tokens: int = DEFAULT_MAX_TOKENS
    ) -> None:
        self.model_name = model_name
        self.provider = provider
        self.max_tokens = max_tokens

    @property
    def name(self) -> str:
        return f"anthropic:{self.model_name}"

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        params = request_params(request, self.model_name, self.max_tokens)
        assembler = EventAssembler()
        with translate_errors(self.name, _ERRORS):
            events = await self.provider.client.messages.create(
                **params, stream=True, extra_headers=trace_headers(request)
            )
            async with events:
                async for event in events:
                    text = assembler.feed(event)
                    if text:
                        yield TextDelta(text=text)
        yield assembler.response(self.name)

    async def aclose(self) -> None:
        await self.provider.close()


def from_reference(spec: str, options: dict[str, str]) -> AnthropicChatModel:
    """Build ``anthropic:<model>?options`` (see the module docstring)."""
    check_options("anthropic", options, _OPTIONS)
    try:
        max_tokens = int(options.get("max_tokens", DEFAULT_MAX_TOKENS))
    except ValueError as exc:
        raise ConfigError("anthropic: max_tokens must be an integer") from exc
    provider_options = {k: v for k, v in options.items() if k != "max_tokens"}
    return AnthropicChatModel(
        spec, AnthropicProvider.from_options(provider_options), max_tokens=max_tokens
    )
