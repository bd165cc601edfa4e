"""The run pipeline (DESIGN.md "One pipeline per run"): model wrappers, event processors, run
hooks and tool context, on real services built by the composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shipyard import Agent, App, tool
from shipyard.agents.context import RunRequest
from shipyard.app import build_services
from shipyard.config import load_settings
from shipyard.models.base import ChatModel, ModelRequest, StreamItem
from shipyard.models.resolver import ModelResolver
from shipyard.models.wrapper import WrapperModel
from shipyard.runtime.services import Services
from shipyard.testing import ScriptedModel

TENANT = "pipeline"
SEEN: list[tuple[str, ModelRequest]] = []
"""What ``Seeing`` saw: (model name, request) for each call, across the test's runs."""


class Seeing(WrapperModel):
    """A wrapper that notes every call it lets through."""

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        SEEN.append((self.name, request))
        async for item in self.wrapped.stream(request):
            yield item


@tool
def add(a: int, b: int) -> int:
    """Add."""
    return a + b


def calc() -> Agent:
    model = ScriptedModel([{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "5"])
    return Agent(name="calc", model=model, tools=[add])


async def start(tmp_path: Path, app: App) -> Services:
    services = build_services(app, load_settings(home=tmp_path, record_wait_s=5))
    await services.records.migrate()
    await services.start()
    return services


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    SEEN.clear()
    built = await start(tmp_path, App(agents=[calc(), Agent(name="echo")], model_wrappers=[Seeing]))
    try:
        yield built
    finally:
        await built.close()


async def test_a_wrapper_sees_every_model_call_of_a_run(services: Services) -> None:
    outcome = await services.invoker.invoke(RunRequest(tenant_id=TENANT, agent="calc", input="2+3"))
    assert outcome.output == "5"
    assert [name for name, _ in SEEN] == ["scripted:test", "scripted:test"]
    events = await services.records.list_events(TENANT, outcome.run_id)
    requests = [e for e in events if e.type == "llm.request"]
    # the wrapper saw each call as sent: with the traceparent of the step's span
    assert [r.traceparent for _, r in SEEN] == [f"00-{e.trace_id}-{e.span_id}-01" for e in requests]


async def test_a_run_request_can_override_the_model(services: Services) -> None:
    request = RunRequest(tenant_id=TENANT, agent="echo", input="hi", model="scripted:echo")
    outcome = await services.invoker.invoke(request)
    assert outcome.output == "echo: hi"
    assert [name for name, _ in SEEN] == ["scripted:echo"]


def test_resolvers_share_no_models() -> None:
    one, other = ModelResolver(), ModelResolver()
    assert one.resolve("scripted:echo") is one.resolve("scripted:echo")
    assert one.resolve("scripted:echo") is not other.resolve("scripted:echo")
    wrapped = ModelResolver([Seeing]).resolve("scripted:echo")
    assert isinstance(wrapped, Seeing) and isinstance(wrapped, ChatModel)
