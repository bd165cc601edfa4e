"""One log record per run event, with the run's ids; bodies only at debug, through the hook."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import pytest

from shipyard import Agent, tool
from shipyard.agents.context import RunRequest
from shipyard.app import App, build_services
from shipyard.config import load_settings
from shipyard.errors import ModelError
from shipyard.runtime.invoke import RunOutcome
from shipyard.runtime.services import Services
from shipyard.telemetry.eventlog import EventLog, Redactor
from shipyard.telemetry.events import EPHEMERAL, Emitter, Event, EventType, new_id, new_span_id
from shipyard.telemetry.tracecontext import TraceParent
from shipyard.testing import ScriptedModel
from tests.telemetry.conftest import LogBuffer

IDS = ("run_id", "seq", "tenant_id", "agent", "session_id", "task_id", "trace_id", "span_id")
IDS_WHEN_SET = ("parent_span_id", "session_id", "task_id")
BODIES = {"input", "metadata", "content", "tool_calls", "arguments", "output"}
WARNING_KINDS = {"run.failed", "guard.flag", "guard.block", "budget.exceeded"}
LOGGED_KINDS = set(get_args(EventType)) - EPHEMERAL
COST_KINDS = {"budget.exceeded", "llm.cached", "llm.cache_miss"}
"""Kinds of the cost governor and the model cache, which these runs do not turn on: their
runs are in tests/runtime/test_budget.py, tests/models/test_cache.py and
tests/models/test_semantic_cache.py."""


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def agents() -> list[Agent]:
    return [
        Agent(
            name="calc",
            model=ScriptedModel(
                [
                    {
                        "tool_calls": [
                            {"name": "add", "arguments": {"a": 2, "b": 3}},
                            {"name": "nope"},  # an unknown tool: a failed tool.result
                        ]
                    },
                    "It is 5.",
                ]
            ),
            tools=[add],
        ),
        Agent(name="broken", model=ScriptedModel([{"error": "provider is down"}])),
    ]


async def services(tmp_path: Path, log_level: str) -> Services:
    """The composition root's own wiring (``EventLog(bodies=...)`` from the log level)."""
    built = build_services(
        App(agents=agents()),
        load_settings(home=tmp_path, log_level=log_level, metrics=False, tracing=False),
    )
    await built.records.migrate()
    await built.start()
    return built


CALLER = TraceParent(trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7")


async def run_all(svc: Services, events: list[Event]) -> tuple[RunOutcome, str]:
    """A run with tools in a session's task, a failed run under a caller's span, and a guard
    flag; returns the first run's outcome and the guard's run id."""
    outcome = await svc.invoker.invoke(
        RunRequest(
            tenant_id="acme",
            agent="calc",
            input="add 2 and 3; my password is s3cret",
            metadata={"user": "s3cret-user"},
            session_id="ses_1",
            task_id="task_1",
        ),
        sinks=[events.append],
        stream_deltas=True,
    )
    with pytest.raises(ModelError):
        await svc.invoker.invoke(
            RunRequest(tenant_id="acme", agent="broken", input="hi", parent=CALLER),
            sinks=[events.append],
        )
    # guard events' producers are in tests/guard: a real emitter feeds the same log
    eventlog = svc.observability.eventlog
    assert eventlog is not None
    guard_run = new_id("run")
    emitter = Emitter(
        run_id=guard_run,
        tenant_id="acme",
        agent="calc",
        trace_id=CALLER.trace_id,
        span_id=new_span_id(),
        sinks=[eventlog.sink, events.append],
    )
    emitter.emit(
        "guard.flag", guard="injection", action="flag", surface="tool_result", score=0.9,
        types=["injection"],
    )  # fmt: skip
    # so are the router's (tests/models/router)
    emitter.emit("llm.route", router="r", chosen="m", decided="m", score=0.2, reason="default")
    emitter.emit(
        "guard.block", guard="pii", action="block", surface="input", score=1.0,
        types=["CREDIT_CARD"],
    )  # fmt: skip
    # egress.request's producer is a tool's ctx.http (tests/runtime/test_egress.py)
    emitter.emit(
        "egress.request", method="GET", scheme="https", host="example.com", port=443,
        allowed=False, bytes=0, latency_ms=0.5, rule="agent.hosts", reason="not allowed",
    )  # fmt: skip
    return outcome, guard_run


def by_run_and_seq(records: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    counts = Counter((r["run_id"], r["seq"]) for r in records)
    assert [key for key, n in counts.items() if n > 1] == []  # no event logged twice
    return {(r["run_id"], r["seq"]): r for r in records}


@dataclass
class InfoRuns:
    events: list[Event]
    """Every event the runs emitted, deltas included."""
    records: dict[tuple[str, int], dict[str, Any]]
    """The event log's records, by (run_id, seq)."""
    outcome: RunOutcome
    guard_run: str

    def only(self, kind: str, **match: Any) -> dict[str, Any]:
        [found] = [
            r
            for r in self.records.values()
            if r["event"] == kind and all(r.get(k) == v for k, v in match.items())
        ]
        return found


@pytest.fixture
async def info_runs(tmp_path: Path, log_to: Callable[..., LogBuffer]) -> InfoRuns:
    logs = log_to("info")
    svc = await services(tmp_path, "info")
    events: list[Event] = []
    try:
        outcome, guard_run = await run_all(svc, events)
    finally:
        await svc.close()
    return InfoRuns(events, by_run_and_seq(logs.events()), outcome, guard_run)


async def test_every_event_kind_logs_exactly_one_record_with_the_events_ids(
    info_runs: InfoRuns,
) -> None:
    events, records = info_runs.events, info_runs.records
    assert any(e.type == "llm.delta" for e in events)  # streamed, and never logged
    logged = [e for e in events if e.type not in EPHEMERAL]
    assert sorted(records) == sorted((e.run_id, e.seq) for e in logged)
    assert {r["event"] for r in records.values()} == LOGGED_KINDS - COST_KINDS
    for event in logged:
        record = records[event.run_id, event.seq]
        assert record["event"] == event.type
        assert record["level"] == ("warning" if event.type in WARNING_KINDS else "info")
        expected = {k: v for k in (*IDS, *IDS_WHEN_SET) if (v := getattr(event, k)) is not None}
        assert {k: record[k] for k in (*IDS, *IDS_WHEN_SET) if k in record} == expected
        assert not BODIES & record.keys()  # bodies only at debug


async def test_the_records_ids_are_the_ones_the_caller_knows(info_runs: InfoRuns) -> None:
    records, outcome = info_runs.records, info_runs.outcome
    calc = [r for r in records.values() if r["run_id"] == outcome.run_id]
    assert {(r["tenant_id"], r["agent"], r["session_id"], r["task_id"]) for r in calc} == {
        ("acme", "calc", "ses_1", "task_1")
    }
    assert {r["trace_id"] for r in calc} == {outcome.trace_id}
    [started] = [r for r in calc if r["event"] == "run.started"]
    assert "parent_span_id" not in started  # a root span
    steps = [r for r in calc if not r["event"].startswith("run.")]
    assert {r["parent_span_id"] for r in steps} == {started["span_id"]}
    calls = {r["tool_call_id"]: r["span_id"] for r in calc if r["event"] == "tool.call"}
    results = {r["tool_call_id"]: r["span_id"] for r in calc if r["event"] == "tool.result"}
    assert calls == results and len(set(calls.values())) == 2  # a span per tool call

    failed = [r for r in records.values() if r["agent"] == "broken"]
    assert {r["trace_id"] for r in failed} == {CALLER.trace_id}
    assert {r["parent_span_id"] for r in failed if r["event"].startswith("run.")} == {
        CALLER.span_id
    }
    assert "session_id" not in failed[0] and "task_id" not in failed[0]
    assert info_runs.only("guard.flag")["run_id"] == info_runs.guard_run


async def test_each_kind_logs_its_facts(info_runs: InfoRuns) -> None:
    only, run_id = info_runs.only, info_runs.outcome.run_id
    response = only("llm.response", run_id=run_id, step=1)
    assert response["model"] == "scripted:test" and response["finish_reason"] == "tool_calls"
    assert response["prompt_tokens"] > 0 and response["completion_tokens"] > 0
    assert {"cost_usd", "latency_ms"} <= response.keys()
    assert only("llm.request", run_id=run_id, step=2)["messages"] == 4
    assert only("tool.call", tool="add")["tool_call_id"] == "call_0_0"
    assert only("tool.result", tool="add")["ok"] is True
    unknown = only("tool.result", tool="nope")
    assert unknown["ok"] is False and unknown["error_kind"] == "unknown_tool"
    assert "error_message" not in unknown  # the tool's error text is a body
    completed = only("run.completed")
    assert completed["usage"]["prompt_tokens"] > 0 and completed["latency_ms"] > 0
    run_failed = only("run.failed")
    assert run_failed["error_code"] == "model_error"
    assert run_failed["error_message"] == "provider is down"
    guard = only("guard.flag")
    assert (guard["guard"], guard["action"]) == ("injection", "flag")
    assert (guard["surface"], guard["types"]) == ("tool_result", ["injection"])
    block = only("guard.block")
    assert (block["guard"], block["action"], block["types"]) == ("pii", "block", ["CREDIT_CARD"])


async def test_bodies_are_logged_at_debug_through_the_redaction_hook(
    tmp_path: Path,
    log_to: Callable[..., LogBuffer],
    redactor: Callable[[Redactor | None], Redactor | None],
) -> None:
    seen: list[str] = []

    def mask(event: Event, body: dict[str, Any]) -> dict[str, Any]:
        seen.append(event.type)
        masked = json.loads(json.dumps(body).replace("s3cret", "[redacted]"))
        masked.pop("metadata", None)
        return masked  # type: ignore[no-any-return]

    redactor(mask)
    logs = log_to("debug")
    svc = await services(tmp_path, "debug")
    try:
        outcome, _ = await run_all(svc, [])
    finally:
        await svc.close()

    assert "s3cret" not in logs.stream.getvalue()
    calc = [r for r in logs.events() if r["run_id"] == outcome.run_id]
    assert Counter(r["event"] for r in calc) == {
        "run.started": 1, "llm.request": 2, "llm.response": 2, "tool.call": 2,
        "tool.result": 2, "run.completed": 1,
    }  # fmt: skip
    # the hook sees each body once (the failed run's input too), and nothing without bodies
    assert Counter(seen) == {
        "run.started": 2, "llm.response": 2, "tool.call": 2, "tool.result": 2,
        "run.completed": 1,
    }  # fmt: skip
    bodies = {(r["event"], r.get("tool")): r for r in calc}
    assert bodies["run.started", None]["input"] == "add 2 and 3; my password is [redacted]"
    assert "metadata" not in bodies["run.started", None]  # the hook dropped it
    assert "content" not in calc[1] and "content" not in calc[7]  # requests have no bodies
    assert [c["name"] for c in calc[2]["tool_calls"]] == ["add", "nope"]
    assert calc[8]["content"] == "It is 5."
    assert json.loads(bodies["tool.call", "add"]["arguments"]) == {"a": 2, "b": 3}
    assert bodies["tool.result", "add"]["output"] == "5"
    assert "unknown tool 'nope'" in bodies["tool.result", "nope"]["error_message"]
    assert bodies["run.completed", None]["output"] == "It is 5."
    assert [r["event"] for r in logs.events() if r["agent"] == "broken"] == [
        "run.started", "llm.request", "run.failed"
    ]  # fmt: skip


def raises(event: Event, body: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("the hook has a bug")


def returns_nothing(event: Event, body: dict[str, Any]) -> Any:
    body.clear()


@pytest.mark.parametrize("broken", [raises, returns_nothing])
async def test_a_failing_redaction_hook_drops_the_bodies_not_the_run(
    tmp_path: Path,
    log_to: Callable[..., LogBuffer],
    redactor: Callable[[Redactor | None], Redactor | None],
    broken: Redactor,
) -> None:
    redactor(broken)
    logs = log_to("debug")
    svc = await services(tmp_path, "debug")
    try:
        outcome, _ = await run_all(svc, [])
    finally:
        await svc.close()

    assert outcome.output == "It is 5."
    records = [r for r in logs.events() if r["run_id"] == outcome.run_id]
    assert len(records) == 10 and not any(BODIES & r.keys() for r in records)
    assert {r["event"] for r in records if "redaction_error" in r} == {
        "run.started", "llm.response", "tool.call", "tool.result", "run.completed"
    }  # fmt: skip


def emit_every_kind(eventlog: EventLog) -> list[Event]:
    emitter = Emitter(
        run_id=new_id("run"),
        tenant_id="acme",
        agent="calc",
        trace_id="1" * 32,
        span_id="2" * 16,
        sinks=[eventlog.sink],
        stream_deltas=True,
    )
    step = new_span_id()
    return [
        emitter.emit("run.started", input="hi", metadata={}),
        emitter.emit("llm.request", step, model="m", step=1, messages=1, tools=0),
        emitter.emit("llm.route", step, router="r", chosen="m", reason="default"),
        emitter.emit("llm.delta", step, text="hel"),
        emitter.emit("llm.response", step, model="m", step=1, content="hello", tool_calls=[]),
        emitter.emit("tool.call", step, id="c1", name="add", arguments="{}"),
        emitter.emit("tool.result", step, id="c1", name="add", ok=True, output="5"),
        emitter.emit("guard.flag", guard="g", action="flag", surface="input", types=["T"]),
        emitter.emit("guard.block", guard="g", action="block", surface="input", types=["T"]),
        emitter.emit("egress.request", step, method="GET", host="h", allowed=True, status=200),
        emitter.emit("llm.cached", step, model="m", saved_usd=0.01, saved_tokens=3),
        emitter.emit("llm.cache_miss", step, model="m", cache="semantic", similarity=0.5),
        emitter.emit("budget.exceeded", policy="warn", reason="r", model="m", scope="tenant"),
        emitter.emit("run.completed", output="hello", usage={}, latency_ms=1.0),
        emitter.emit("run.failed", error={"code": "x", "message": "y"}, usage={}),
    ]


@pytest.mark.parametrize(
    ("level", "kinds"),
    [
        ("debug", LOGGED_KINDS),
        ("info", LOGGED_KINDS),
        ("warning", WARNING_KINDS),
        ("error", set()),
    ],
)
def test_the_log_level_decides_which_kinds_are_logged(
    log_to: Callable[..., LogBuffer], level: str, kinds: set[str]
) -> None:
    logs = log_to(level)
    eventlog = EventLog(bodies=True)
    emitted = emit_every_kind(eventlog)

    assert eventlog.enabled == bool(kinds)
    records = logs.events()
    assert [(r["event"], r["seq"]) for r in records] == [
        (e.type, e.seq) for e in emitted if e.type in kinds
    ]


def test_console_records_are_one_line_each_with_the_ids(
    log_to: Callable[..., LogBuffer],
) -> None:
    logs = log_to("info", "console")
    emitted = emit_every_kind(EventLog())

    lines = logs.lines()
    assert len(lines) == len(LOGGED_KINDS)
    for line, event in zip(lines, [e for e in emitted if e.type in LOGGED_KINDS], strict=True):
        assert f" {event.type} " in line and f"run_id={event.run_id}" in line
        assert f"span_id={event.span_id}" in line and f"seq={event.seq}" in line
