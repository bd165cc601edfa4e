"""OpenAI Chat Completions, and every server that speaks it (vLLM, Ollama, llama.cpp...).

``openai:<model>?base_url=...&api_key_env=...&timeout=...&max_retries=...``; ``api_key=`` is
meant for a ``secret://`` reference (``shipyard.models.secret_options`` reads it per call).
Without options the SDK's own defaults apply (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``); without
any key a placeholder is sent, which local servers ignore.

The provider (:class:`OpenAIProvider`) owns the client and its auth; the model
(:class:`OpenAIChatModel`) owns the wire format. The wire format is pure functions
(:func:`chat_request_body`, :class:`ChunkAssembler`) so the in-process ``local:`` model, which
answers in the same format, reuses them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

try:
    import openai
    from openai.types.chat import ChatCompletionChunk
except ImportError as exc:  # pragma: no cover - openai is a core dependency today
    raise ImportError("the openai: model provider needs the `openai` package") from exc

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
    Message,
    ModelRequest,
    StreamItem,
    SystemMessage,
    TextDelta,
    ToolMessage,
    ToolSpec,
    UserMessage,
)

_OPTIONS = ("api_key", "api_key_env", "base_url", "max_retries", "timeout")


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
class ChunkAssembler(StreamAssembly):
    """Folds streamed chunks into one response; :meth:`feed` returns the text each one adds.

    Tool calls arrive as deltas keyed by ``index``: id and name first, arguments in pieces.
    """

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
                call = self._calls.setdefault(
                    delta.index, PartialCall(default_id=f"call_{delta.index}")
                )
                call.id = call.id or delta.id or ""
                if delta.function is not None:
                    call.name += delta.function.name or ""
                    call.arguments.append(delta.function.arguments or "")
        if text:
            self._text.append(text)
        return text


# --- provider and model -------------------------------------------------------------------------


def _read_status(exc: openai.APIStatusError) -> tuple[int, str, dict[str, Any]]:
    """The message and type of the error body (the SDK unwraps ``{"error": ...}`` itself)."""
    body = exc.body if isinstance(exc.body, dict) else {}
    detail = body.get("message") or exc.message
    return exc.status_code, detail, {"status": exc.status_code, "type": body.get("type")}


_ERRORS = SdkErrors(
    status=openai.APIStatusError,
    timeout=openai.APITimeoutError,
    connection=openai.APIConnectionError,
    base=openai.OpenAIError,
    read_status=_read_status,
)


@dataclass(frozen=True, slots=True)
class OpenAIProvider:
    """Owns the HTTP client and its auth; one per model reference, shared by its calls."""

    client: openai.AsyncOpenAI

    @classmethod
    def from_options(cls, options: dict[str, str]) -> OpenAIProvider:
        check_options("openai", options, _OPTIONS)
        api_key = options.get("api_key") or named_api_key("openai", options)
        if api_key is None:
            api_key = os.environ.get("OPENAI_API_KEY")
        settings = client_settings("openai", options)
        settings["api_key"] = api_key or PLACEHOLDER_API_KEY  # local servers ignore the key
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
        with translate_errors(self.name, _ERRORS):
            chunks = await self.provider.client.chat.completions.create(
                **body,
                stream=True,
                stream_options={"include_usage": True},
                extra_headers=trace_headers(request),
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
