"""Spans from real runs (the invoker, the agent loop, a real SQLite record store): their ids are
the events' ids, their links make one tree, and their attributes follow the GenAI conventions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shipyard import Agent, RunContext, agent, tool
from shipyard.agents.context import RunRequest
from shipyard.app import App, build_services
from shipyard.config import load_settings
from shipyard.errors import ModelError
from shipyard.runtime.services import Services
from shipyard.telemetry.events import Event
from shipyard.telemetry.exporters import otlp_wanted
from shipyard.telemetry.spans import SpanRow
from shipyard.telemetry.tracecontext import TraceParent
from shipyard.telemetry.tracing import Tracing, spans_of
from shipyard.testing import ScriptedModel

TENANT = "acme"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@agent("flagged")
async def flagged(ctx: RunContext, input: object) -> str:
    ctx.emit("guard.flag", guard="injection", action="flag", reason="ignore previous")
    return "careful"


def build(tmp_path: Path, *agents: Any) -> Services:
    calc = Agent(
        name="calc",
        model=ScriptedModel(
            [
                {
                    "tool_calls": [
                        {"name": "add", "arguments": {"a": 2, "b": 3}},
                        {"name": "nosuch", "arguments": {}},
                    ]
                },
                "It is 5.",
            ]
        ),
        tools=[add],
    )
    broken = Agent(name="broken", model=ScriptedModel([{"error": "provider is down"}]))
    app = App(agents=[calc, broken, flagged, *agents])
    return build_services(app, load_settings(home=tmp_path, log_events=False, metrics=False))


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[Services]:
    services = build(tmp_path)
    await services.records.migrate()
    await services.start()
    try:
        yield services
    finally:
        await services.close()


async def stored(svc: Services, trace_id: str) -> list[SpanRow]:
    """The trace as ``GET /v1/traces`` shows it (built from the stored events)."""
    await svc.recorder.durable()
    return spans_of(await svc.records.trace_events(TENANT, trace_id))


async def events_of(svc: Services, run_id: str) -> list[Event]:
    return await svc.records.list_events(TENANT, run_id)


def ns(event: Event) -> int:
    return int(event.ts * 1_000_000_000)


async def test_a_run_is_a_tree_of_spans_with_the_events_ids(svc: Services) -> None:
    outcome = await svc.invoker.invoke(RunRequest(tenant_id=TENANT, agent="calc", input="2+3?"))
    events = await events_of(svc, outcome.run_id)
    spans = {s["span_id"]: s for s in await stored(svc, outcome.trace_id)}

    started = events[0]
    assert started.type == "run.started" and started.parent_span_id is None
    by_kind: dict[str, list[Event]] = {}
    for e in events:
        assert e.trace_id == outcome.trace_id
        by_kind.setdefault(e.type, []).append(e)
    requests, calls = by_kind["llm.request"], by_kind["tool.call"]
    assert set(spans) == {started.span_id} | {e.span_id for e in requests + calls}
    assert {(s["trace_id"], s["tenant_id"]) for s in spans.values()} == {(outcome.trace_id, TENANT)}

    run = spans[started.span_id]
    assert run["name"] == "invoke_agent calc" and run["kind"] == "internal"
    assert run["parent_span_id"] is None and run["service"] == "shipyard"
    assert (run["status"], run["status_message"]) == ("unset", None)
    assert (run["start_ns"], run["end_ns"]) == (ns(started), ns(by_kind["run.completed"][0]))
    assert run["attributes"] == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "calc",
        "shipyard.run_id": outcome.run_id,
        "shipyard.tenant_id": TENANT,
        "gen_ai.usage.input_tokens": outcome.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": outcome.usage.completion_tokens,
        "shipyard.usage.cost_usd": outcome.usage.cost_usd,
    }

    responses = {e.span_id: e for e in by_kind["llm.response"]}
    for request in requests:
        chat = spans[request.span_id]
        response = responses[request.span_id]
        assert chat["parent_span_id"] == run["span_id"] == request.parent_span_id
        assert chat["name"] == "chat test" and chat["kind"] == "client"
        assert (chat["start_ns"], chat["end_ns"]) == (ns(request), ns(response))
        assert chat["attributes"] == {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "test",
            "gen_ai.provider.name": "scripted",
            "gen_ai.system": "scripted",
            "shipyard.run_id": outcome.run_id,
            "shipyard.tenant_id": TENANT,
            "shipyard.step": request.data["step"],
            "gen_ai.usage.input_tokens": response.data["prompt_tokens"],
            "gen_ai.usage.output_tokens": response.data["completion_tokens"],
            "shipyard.usage.cost_usd": response.data["cost_usd"],
            "gen_ai.response.finish_reasons": [response.data["finish_reason"]],
        }

    tools = {spans[c.span_id]["attributes"]["gen_ai.tool.name"]: spans[c.span_id] for c in calls}
    assert set(tools) == {"add", "nosuch"}
    for call in calls:
        span = spans[call.span_id]
        assert span["parent_span_id"] == run["span_id"] and span["kind"] == "internal"
        assert span["name"] == f"execute_tool {call.data['name']}"
        assert span["attributes"]["gen_ai.operation.name"] == "execute_tool"
        assert span["attributes"]["gen_ai.tool.call.id"] == call.data["id"]
        assert span["attributes"]["gen_ai.tool.type"] == "function"
    assert tools["add"]["status"] == "unset"
    unknown = tools["nosuch"]
    assert (unknown["status"], unknown["status_message"]) == ("error", "unknown_tool")


async def test_a_failed_run_and_its_unanswered_model_call_are_errors(svc: Services) -> None:
    with pytest.raises(ModelError):
        await svc.invoker.invoke(RunRequest(tenant_id=TENANT, agent="broken", input="hi"))
    [run_record] = (await svc.records.list_runs(TENANT, agent="broken")).items
    assert run_record.trace_id is not None
    events = await events_of(svc, run_record.id)
    assert [e.type for e in events] == ["run.started", "llm.request", "run.failed"]
    spans = {s["span_id"]: s for s in await stored(svc, run_record.trace_id)}

    run, chat = spans[events[0].span_id], spans[events[1].span_id]
    assert run["status"] == "error" and run["attributes"]["error.type"] == "model_error"
    assert run["status_message"] == events[2].data["error"]["message"]
    assert chat["parent_span_id"] == run["span_id"]
    assert chat["status"] == "error" and chat["attributes"]["error.type"] == "model_error"
    assert chat["end_ns"] == run["end_ns"] == ns(events[2])


async def test_a_run_with_a_caller_hangs_under_the_callers_span(svc: Services) -> None:
    caller = TraceParent.new()
    outcome = await svc.invoker.invoke(
        RunRequest(tenant_id=TENANT, agent="calc", input="2+3?", parent=caller, session_id="ses_1")
    )
    assert outcome.trace_id == caller.trace_id
    spans = await stored(svc, caller.trace_id)
    [run] = [s for s in spans if s["name"] == "invoke_agent calc"]
    assert run["parent_span_id"] == caller.span_id
    assert run["attributes"]["gen_ai.conversation.id"] == run["attributes"]["shipyard.session_id"]
    assert {s["parent_span_id"] for s in spans if s is not run} == {run["span_id"]}


async def test_an_agent_calling_another_makes_one_trace(tmp_path: Path) -> None:
    services: list[Services] = []

    @agent("outer")
    async def outer(ctx: RunContext, input: object) -> str:
        inner = await services[0].invoker.invoke(
            RunRequest(tenant_id=ctx.tenant_id, agent="calc", input="x")
        )
        return f"inner said {inner.output}"

    services.append(build(tmp_path, outer))
    svc = services[0]
    await svc.records.migrate()
    await svc.start()
    try:
        outcome = await svc.invoker.invoke(RunRequest(tenant_id=TENANT, agent="outer", input="go"))
        spans = await stored(svc, outcome.trace_id)
    finally:
        await svc.close()
    by_name = {s["name"]: s for s in spans}
    outer_run, inner_run = by_name["invoke_agent outer"], by_name["invoke_agent calc"]
    assert outer_run["parent_span_id"] is None
    assert inner_run["parent_span_id"] == outer_run["span_id"]
    assert inner_run["attributes"]["shipyard.parent_run_id"] == outcome.run_id
    assert by_name["execute_tool add"]["parent_span_id"] == inner_run["span_id"]


async def test_a_guard_flag_is_an_event_of_the_run_span(svc: Services) -> None:
    outcome = await svc.invoker.invoke(RunRequest(tenant_id=TENANT, agent="flagged", input="hi"))
    [run] = await stored(svc, outcome.trace_id)
    [event] = run["events"]
    assert event["name"] == "shipyard.guard.flag"
    assert event["attributes"] == {
        "shipyard.guard.guard": "injection",
        "shipyard.guard.action": "flag",
        "shipyard.guard.reason": "ignore previous",
    }
    assert run["start_ns"] <= event["time_ns"] <= run["end_ns"]


async def test_the_sdk_processors_get_the_same_spans_as_the_store(
    svc: Services, tmp_path: Path
) -> None:
    """What OTLP exports: the SDK's ``ReadableSpan`` of every span, with the stored ids, links,
    kinds, times, statuses and attributes (a remote parent for the run span only)."""
    caller = TraceParent.new()
    await svc.invoker.invoke(
        RunRequest(tenant_id=TENANT, agent="calc", input="2+3?", parent=caller)
    )
    with pytest.raises(ModelError):
        await svc.invoker.invoke(
            RunRequest(tenant_id=TENANT, agent="broken", input="hi", parent=caller)
        )
    stored_spans = {s["span_id"]: s for s in await stored(svc, caller.trace_id)}
    runs = (await svc.records.list_runs(TENANT)).items
    events = [e for r in reversed(runs) for e in await events_of(svc, r.id)]

    exporter = InMemorySpanExporter()
    tracing = Tracing(processors=[SimpleSpanProcessor(exporter)])
    for event in events:
        tracing.sink(event)
    exported = {f"{s.context.span_id:016x}": s for s in exporter.get_finished_spans()}
    await tracing.close()

    assert set(exported) == set(stored_spans) and len(exported) == 7
    for span_id, span in exported.items():
        row = stored_spans[span_id]
        assert span.context is not None and span.parent is not None
        assert f"{span.context.trace_id:032x}" == caller.trace_id
        assert f"{span.parent.span_id:016x}" == row["parent_span_id"]
        assert span.parent.is_remote == (row["parent_span_id"] == caller.span_id)
        assert span.context.trace_flags.sampled
        assert (span.name, span.kind.name.lower()) == (row["name"], row["kind"])
        assert (span.start_time, span.end_time) == (row["start_ns"], row["end_ns"])
        assert span.status.status_code.name.lower() == row["status"]
        assert span.status.description == row["status_message"]
        assert dict(span.attributes or {}) == {
            k: tuple(v) if isinstance(v, list) else v for k, v in row["attributes"].items()
        }
        assert span.resource.attributes["service.name"] == "shipyard"
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name == "shipyard"


async def test_tracing_can_be_turned_off_and_costs_nothing_without_an_exporter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_TRACES_EXPORTER"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    off = build_services(App(), load_settings(home=tmp_path, tracing=False))
    on = build_services(App(), load_settings(home=tmp_path))
    try:
        assert off.observability.tracing is None
        assert on.observability.tracing is not None
        assert not on.observability.tracing.enabled  # spans go nowhere: the sink returns at once
    finally:
        await off.records.close()
        await on.records.close()


async def test_the_standard_variables_choose_the_exporter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    assert not otlp_wanted()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:1/v1/traces")
    assert otlp_wanted()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not otlp_wanted()
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    assert otlp_wanted()

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "billing")
    named = Tracing(collect=[].append, service="ignored")
    assert named.resource.attributes["service.name"] == named.service == "billing"
    assert named.enabled and named.processors == ()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    assert not Tracing().enabled  # the exporter is off


async def test_a_broken_event_never_fails_the_run() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing(processors=[SimpleSpanProcessor(exporter)])
    base = {"run_id": "r", "ts": 1.0, "tenant_id": TENANT, "agent": "a", "span_id": "x"}
    tracing.sink(Event(type="run.started", seq=1, trace_id="not hex", **base))
    tracing.sink(Event(type="run.completed", seq=2, trace_id="not hex", **base))
    assert tracing.failures == 1 and exporter.get_finished_spans() == ()
    await tracing.close()
