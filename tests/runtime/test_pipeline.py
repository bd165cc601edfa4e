"""The run pipeline (DESIGN.md "One pipeline per run"): model wrappers, event processors, run
hooks and tool context, on real services built by the composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shipyard import Agent, App, RunContext, RunResult, agent, tool
from shipyard.agents.context import ContextBudget, RunRequest
from shipyard.app import build_services
from shipyard.config import load_settings
from shipyard.errors import RunFailure
from shipyard.models.base import ChatModel, ModelRequest, StreamItem
from shipyard.models.resolver import ModelResolver
from shipyard.models.wrapper import WrapperModel
from shipyard.runtime.compaction import SUMMARY_PREFIX
from shipyard.runtime.services import Services
from shipyard.testing import ScriptedModel, run_agent

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


class Noting:
    """A run hook noting what it sees; ``refuses`` input that says "forbidden"."""

    def __init__(self, name: str, notes: list[str], *, refuses: bool = False) -> None:
        self.name, self.notes, self.refuses = name, notes, refuses

    async def before(self, ctx: RunContext) -> None:
        self.notes.append(f"{self.name}.before {ctx.agent} {ctx.request.input}")
        if self.refuses and ctx.request.input == "forbidden":
            raise RunFailure("the input guard refused it")

    async def after(self, ctx: RunContext, ended: RunResult | BaseException) -> None:
        what = ended.output if isinstance(ended, RunResult) else type(ended).__name__
        self.notes.append(f"{self.name}.after {ctx.agent} {what}")


CALLED: list[str] = []


@agent("fn")
async def fn(ctx: RunContext, input: object) -> str:
    CALLED.append(str(input))
    if input == "boom":
        raise ValueError("boom")
    return f"fn: {input}"


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


async def test_run_hooks_wrap_built_in_and_function_agents(tmp_path: Path) -> None:
    notes: list[str] = []
    CALLED.clear()
    hooks = [Noting("outer", notes), Noting("inner", notes, refuses=True)]
    app = App(agents=[fn, Agent(name="echo", model="scripted:echo")], run_hooks=hooks)
    services = await start(tmp_path, app)
    try:
        invoke = services.invoker.invoke
        await invoke(RunRequest(tenant_id=TENANT, agent="echo", input="hi"))
        await invoke(RunRequest(tenant_id=TENANT, agent="fn", input="yo"))
        with pytest.raises(RunFailure):
            await invoke(RunRequest(tenant_id=TENANT, agent="fn", input="boom"))
        with pytest.raises(RunFailure, match="refused"):
            await invoke(RunRequest(tenant_id=TENANT, agent="fn", input="forbidden"))
        runs = (await services.records.list_runs(TENANT)).items
    finally:
        await services.close()
    assert notes == [
        "outer.before echo hi", "inner.before echo hi",
        "inner.after echo echo: hi", "outer.after echo echo: hi",
        "outer.before fn yo", "inner.before fn yo",
        "inner.after fn fn: yo", "outer.after fn fn: yo",
        "outer.before fn boom", "inner.before fn boom",
        "inner.after fn ValueError", "outer.after fn ValueError",
        # a refusing before: the agent never runs, the hooks entered before it see the error
        "outer.before fn forbidden", "inner.before fn forbidden", "outer.after fn RunFailure",
    ]  # fmt: skip
    assert CALLED == ["yo", "boom"]
    refused = next(r for r in runs if r.input == "forbidden")
    assert refused.status == "failed" and refused.error is not None
    assert "refused" in refused.error["message"]


async def test_a_tool_receives_its_runs_context(tmp_path: Path) -> None:
    seen: list[tuple[str, object, str]] = []

    @tool
    async def fetch(url: str, ctx: RunContext) -> str:
        """Fetch a page.

        Args:
            url: What to fetch.
        """
        seen.append((ctx.run_id, ctx.request.input, type(ctx.http).__name__))
        ctx.emit("app.fetching", url=url)
        reply = await ctx.http.get(url)  # the egress policy refuses loopback
        return reply.text

    assert set(fetch.spec.parameters["properties"]) == {"url"}  # no ctx for the model
    assert fetch.spec.parameters["required"] == ["url"]
    call = {"name": "fetch", "arguments": {"url": "http://127.0.0.1:9/"}}
    model = ScriptedModel([{"tool_calls": [call]}, "done"])
    services = await start(tmp_path, App(agents=[Agent(name="web", model=model, tools=[fetch])]))
    try:
        request = RunRequest(tenant_id=TENANT, agent="web", input="get it")
        outcome = await services.invoker.invoke(request)
        events = await services.records.list_events(TENANT, outcome.run_id)
    finally:
        await services.close()
    assert seen == [(outcome.run_id, "get it", "AsyncClient")]
    assert [e.data for e in events if e.type == "app.fetching"] == [{"url": "http://127.0.0.1:9/"}]
    [result] = [e.data for e in events if e.type == "tool.result"]
    assert result["ok"] is False and "egress policy refuses it" in result["error"]


async def test_compactions_model_call_goes_through_the_pipeline(tmp_path: Path) -> None:
    SEEN.clear()
    budget = ContextBudget(max_tokens=60, policy="summarize", keep_last=2)
    chat = Agent(name="chat", model=ScriptedModel(echo=True), context_budget=budget)
    services = await start(tmp_path, App(agents=[chat], model_wrappers=[Seeing]))
    try:
        session = (await services.sessions.create(TENANT, "chat", metadata={}, ttl_s=None)).id
        outcomes = [
            await services.sessions.turn(RunRequest.turn(TENANT, session, f"fact {n}: " + "y" * 60))
            for n in range(4)
        ]
        runs = {r.id: r for r in (await services.records.list_runs(TENANT, limit=100)).items}
    finally:
        await services.close()
    summaries = [r for _, r in SEEN if r.messages[0].content.startswith("Summarize")]
    turns = [r for _, r in SEEN if not r.messages[0].content.startswith("Summarize")]
    assert summaries and len(turns) == 4  # the wrapper saw every model call, compaction's too
    assert turns[-1].messages[0].content.startswith(SUMMARY_PREFIX)
    # each summary is a recorded run of its own, a child of the turn it compacted for
    children = [r for r in runs.values() if r.metadata.get("compaction_of") == session]
    assert len(children) == len(summaries)
    turn_ids = {o.run_id for o in outcomes}
    assert all(c.parent_run_id in turn_ids and c.status == "succeeded" for c in children)
    assert all(c.completion_tokens > 0 for c in children)  # priced and counted


async def test_run_agent_goes_through_the_invoker() -> None:
    SEEN.clear()
    notes: list[str] = []
    result, events = await run_agent(
        calc(), "2+3", model_wrappers=[Seeing], run_hooks=[Noting("hook", notes)]
    )
    assert result.output == "5"
    assert len(SEEN) == 2  # both model calls passed the wrapper
    assert notes == ["hook.before calc 2+3", "hook.after calc 5"]
    assert [events[0].type, events[-1].type] == ["run.started", "run.completed"]
