"""A llama.cpp server serving SmolLM2 over HTTP, and the helpers of the adapter tests against it.

The server runs in a child process, started once per test module that asks for ``server_url``,
with the Hermes-style chat template that ``local:`` models use (``CHATML_TOOLS_TEMPLATE``), so
that llama.cpp renders tools into the prompt and parses ``<tool_call>`` answers. Without tools
the template renders exactly like SmolLM2's own. It speaks both the Chat Completions
(``/v1/chat/completions``) and the Messages (``/v1/messages``) APIs, so the ``openai:`` and
``anthropic:`` tests share it, its tools and the helpers that read a stream.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shipyard.errors import ConfigError
from shipyard.models._local_tools import CHATML_TOOLS_TEMPLATE
from shipyard.models.base import ChatModel, ModelRequest, ModelResponse, StreamItem, ToolSpec
from shipyard.models.local import gguf_path
from tests.conftest import missing_service


def _city_tool(name: str, description: str) -> ToolSpec:
    return ToolSpec(
        name=name,
        description=description,
        parameters={
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    )


# Two tools, so that a test can tell which one the model picked.
WEATHER = _city_tool("get_weather", "Get the weather for a city")
CLOCK = _city_tool("get_time", "Get the local time in a city")


async def collect(model: ChatModel, request: ModelRequest) -> list[StreamItem]:
    """Every item ``model`` streams for ``request``, in order."""
    return [item async for item in model.stream(request)]


def final(items: list[StreamItem]) -> ModelResponse:
    """The one response of a stream, checked to be its last item (the ``ChatModel`` contract)."""
    responses = [i for i in items if isinstance(i, ModelResponse)]
    assert len(responses) == 1
    assert items[-1] is responses[0]
    return responses[0]


# Runs in the child: serve on any free port, publish the URL atomically, wait to be killed.
LAUNCHER = """\
import sys, threading
from pathlib import Path
from shipyard.models.local import start_llama_server
template, url_file = Path(sys.argv[1]), Path(sys.argv[2])
server = start_llama_server(chat_template=template.read_text())
url_file.with_suffix(".tmp").write_text(server.base_url)
url_file.with_suffix(".tmp").rename(url_file)
threading.Event().wait()
"""


def _wait_ready(proc: subprocess.Popen[bytes], url_file: Path, log: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama.cpp server exited with {proc.returncode}:\n{log.read_text()}")
        if url_file.exists():
            base_url = url_file.read_text()
            health = base_url.removesuffix("/v1") + "/health"
            try:
                if httpx.get(health, timeout=2).status_code == 200:
                    return base_url
            except httpx.TransportError:
                pass
        time.sleep(0.1)
    pytest.fail(f"llama.cpp server not ready after 60 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The ``/v1`` base URL of a llama.cpp server in a child process, killed at the end.

    OpenAI clients take it as is; Anthropic clients add ``/v1/messages`` themselves, so they take
    it without the ``/v1``.
    """
    try:
        gguf_path()
    except ConfigError as exc:
        missing_service(str(exc))
    folder = tmp_path_factory.mktemp("llamacpp")
    template, url_file, log = folder / "hermes.jinja", folder / "url", folder / "server.log"
    template.write_text(CHATML_TOOLS_TEMPLATE)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(template), str(url_file)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield _wait_ready(proc, url_file, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
