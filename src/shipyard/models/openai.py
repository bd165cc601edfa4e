"""OpenAI Chat Completions, and every server that speaks it (vLLM, Ollama, llama.cpp...).

``openai:<model>?base_url=...&api_key_env=...&timeout=...&max_retries=...``. Without options the
SDK's own defaults apply (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``); without any key a placeholder
is sent, which local servers ignore.

The provider (:class:`OpenAIProvider`) owns the client and its auth; the model
(:class:`OpenAIChatModel`) owns the wire format. The wire format is pure functions
(:func:`chat_request_body`, :class:`ChunkAssembler`) so the in-process ``local:`` model, which
answers in the same format, reuses them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

try:
    import openai
    from openai.types.chat import ChatCompletionChunk
except ImportError as exc:  # pragma: no cover - openai is a core dependency today
    raise ImportError("the openai: model provider needs the `openai` package") from exc

from shipyard.errors import ConfigError, ModelError
from shipyard.models.base import (
    AssistantMessage,
    Message,
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
from shipyard.models.prices import price

PLACEHOLDER_API_KEY = "not-needed"
_OPTIONS = ("api_key_env", "base_url", "max_retries", "timeout")


# --- wire format (pure) -------------------------------------------------------------------------


def wire_message(message: Message) -> dict[str, Any]:
    """One of our messages as a Chat Completions message."""
    if isinstance(message, SystemMessage | UserMessage):
        return {"role": message.role, "content": message.content}
    if isinstance(message, ToolMessage):
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    wire: dict[str, Any] = {"role": "assistant", "content": message.content}
    if message.tool_calls:
        wire["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    return wire


def wire_tool(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


def chat_request_body(request: ModelRequest, model: str) -> dict[str, Any]:
    """The JSON body of a chat completion for ``request``, without the streaming flags."""
    body: dict[str, Any] = {"model": model, "messages": [wire_message(m) for m in request.messages]}
    if request.tools:
        body["tools"] = [wire_tool(t) for t in request.tools]
    if request.response_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": request.response_schema, "strict": True},
        }
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    return body


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class ChunkAssembler:
    """Folds streamed chunks into one response; :meth:`feed` returns the text each one adds.

    Tool calls arrive as deltas keyed by ``index``: id and name first, arguments in pieces.
    A server that sends no usage is counted as 0 tokens, never estimated.
    """

    model: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    _text: list[str] = field(default_factory=list)
    _calls: dict[int, _PartialCall] = field(default_factory=dict)

    def feed(self, chunk: ChatCompletionChunk) -> str:
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            self.prompt_tokens = chunk.usage.prompt_tokens
            self.completion_tokens = chunk.usage.completion_tokens
        text = ""
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            self.finish_reason = choice.finish_reason or self.finish_reason
            text += choice.delta.content or ""
            for delta in choice.delta.tool_calls or ():
                call = self._calls.setdefault(delta.index, _PartialCall())
                call.id = call.id or delta.id or ""
                if delta.function is not None:
                    call.name += delta.function.name or ""
                    call.arguments.append(delta.function.arguments or "")
        if text:
            self._text.append(text)
        return text

    def response(self, model_ref: str) -> ModelResponse:
        calls = tuple(
            ToolCall(
                id=call.id or f"call_{index}",
                name=call.name,
                arguments="".join(call.arguments) or "{}",
            )
            for index, call in sorted(self._calls.items())
        )
        return ModelResponse(
            message=AssistantMessage(content="".join(self._text) or None, tool_calls=calls),
            usage=price(model_ref, self.prompt_tokens, self.completion_tokens),
            model=self.model,
            finish_reason=self.finish_reason,
        )


# --- provider and model -------------------------------------------------------------------------


@contextmanager
def _translate_errors(model: str) -> Iterator[None]:
    """Map the SDK's exceptions to ``ModelError``, naming the model and the HTTP status."""
    try:
        yield
    except openai.APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        detail = body.get("message") or exc.message
        raise ModelError(
            f"{model}: the server answered HTTP {exc.status_code}: {detail}",
            details={"status": exc.status_code, "type": body.get("type")},
        ) from exc
    except openai.APITimeoutError as exc:
        raise ModelError(f"{model}: the request timed out") from exc
    except openai.APIConnectionError as exc:
        raise ModelError(f"{model}: cannot reach the server: {exc.message}") from exc
    except openai.OpenAIError as exc:  # errors inside a stream, bad responses
        raise ModelError(f"{model}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class OpenAIProvider:
    """Owns the HTTP client and its auth; one per model reference, shared by its calls."""

    client: openai.AsyncOpenAI

    @classmethod
    def from_options(cls, options: dict[str, str]) -> OpenAIProvider:
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ConfigError(f"openai: unknown options {unknown}; known: {', '.join(_OPTIONS)}")
        key_env = options.get("api_key_env")
        if key_env and key_env not in os.environ:
            raise ConfigError(f"openai: api_key_env names {key_env!r}, which is not set")
        api_key = os.environ[key_env] if key_env else os.environ.get("OPENAI_API_KEY")
        try:
            timeout = float(options["timeout"]) if "timeout" in options else None
            retries = int(options["max_retries"]) if "max_retries" in options else None
        except ValueError as exc:
            raise ConfigError(f"openai: timeout and max_retries must be numbers: {exc}") from exc
        settings: dict[str, Any] = {"api_key": api_key or PLACEHOLDER_API_KEY}
        if options.get("base_url"):
            settings["base_url"] = options["base_url"]
        if timeout is not None:
            settings["timeout"] = timeout
        if retries is not None:
            settings["max_retries"] = retries
        return cls(openai.AsyncOpenAI(**settings))

    async def close(self) -> None:
        await self.client.close()


class OpenAIChatModel:
    """A Chat Completions model, always streamed (usage included)."""

    def __init__(self, model_name: str, provider: OpenAIProvider) -> None:
        self.model_name = model_name
        self.provider = provider

    @property
    def name(self) -> str:
        return f"openai:{self.model_name}"

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        body = chat_request_body(request, self.model_name)
        assembler = ChunkAssembler()
        with _translate_errors(self.name):
            chunks = await self.provider.client.chat.completions.create(
                **body, stream=True, stream_options={"include_usage": True}
            )
            async with chunks:
                async for chunk in chunks:
                    text = assembler.feed(chunk)
                    if text:
                        yield TextDelta(text=text)
        yield assembler.response(self.name)

    async def aclose(self) -> None:
        await self.provider.close()


def from_reference(spec: str, options: dict[str, str]) -> OpenAIChatModel:
    """Build ``openai:<model>?options`` (see the module docstring)."""
    return OpenAIChatModel(spec, OpenAIProvider.from_options(dict(options)))
