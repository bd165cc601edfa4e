"""The span role of the record store contract, on every backend (see conftest ``store``): a
trace's stored events come back, the tenant's runs' only, and telemetry's ``spans_of`` makes
the trace's spans of them (the store builds no spans)."""

from __future__ import annotations

import os
from typing import Any

from shipyard.stores.records.base import RecordStore, RunRecord
from shipyard.stores.records.sql import SqlRecordStore
from shipyard.telemetry.events import Event
from shipyard.telemetry.spans import SpanRow
from shipyard.telemetry.tracing import spans_of
from tests.stores.records.test_contract import T0, make_run, run_id

TS = 1_764_000_000.5


def trace_id() -> str:
    return os.urandom(16).hex()


def a_run(
    n: int, trace: str, tenant: str = "t1", parent_span: str | None = None
) -> tuple[RunRecord, list[Event]]:
    """A finished run with one model call, as the recorder stores it."""
    rid = run_id(n)
    run_span, chat_span = os.urandom(8).hex(), os.urandom(8).hex()
    ids: dict[str, Any] = {"run_id": rid, "tenant_id": tenant, "agent": "echo", "trace_id": trace}
    events = [
        Event(type="run.started", seq=1, ts=TS + n, span_id=run_span,
              parent_span_id=parent_span, data={"input": "hi"}, **ids),
        Event(type="llm.request", seq=2, ts=TS + n + 0.1, span_id=chat_span,
              parent_span_id=run_span, data={"model": "scripted:echo", "step": 1}, **ids),
        Event(type="llm.response", seq=3, ts=TS + n + 0.2, span_id=chat_span,
              parent_span_id=run_span, data={"model": "scripted:echo", "step": 1,
              "prompt_tokens": 3, "completion_tokens": 2, "cost_usd": 0.0,
              "finish_reason": "stop"}, **ids),
        Event(type="run.completed", seq=4, ts=TS + n + 0.3, span_id=run_span,
              parent_span_id=parent_span, data={"output": "echo: hi", "usage": {
                  "prompt_tokens": 3, "completion_tokens": 2, "cost_usd": 0.0}}, **ids),
    ]  # fmt: skip
    run = make_run(rid, tenant, status="succeeded", trace_id=trace, created_at=T0)
    return run, events


async def get_trace(store: SqlRecordStore, tenant_id: str, trace: str) -> list[SpanRow]:
    """The trace as ``GET /v1/traces`` shows it: spans built from the stored events."""
    return spans_of(await store.trace_events(tenant_id, trace))


async def test_a_trace_is_its_runs_stored_events_by_run_and_seq(store: SqlRecordStore) -> None:
    trace = trace_id()
    first, first_events = a_run(1, trace)
    second, second_events = a_run(2, trace)
    other, other_events = a_run(3, trace_id())
    delta = Event(type="llm.delta", seq=5, ts=TS, data={"text": "e"}, **_ids(first_events[0]))
    shuffled = [*second_events[::-1], delta, *other_events, *first_events[::-1]]
    await store.write_batch([second, other, first], shuffled)

    events = await store.trace_events("t1", trace)
    assert [(e.run_id, e.seq) for e in events] == [
        (run.id, n) for run in (first, second) for n in (1, 2, 3, 4)
    ]
    assert events == [*first_events, *second_events]  # every id and fact a span needs
    assert await store.trace_events("t2", trace) == []
    assert await store.trace_events("t1", trace_id()) == []


def _ids(e: Event) -> dict[str, Any]:
    return {k: getattr(e, k) for k in ("run_id", "tenant_id", "agent", "trace_id", "span_id")}


async def test_a_trace_comes_back_as_spans_by_start_time(store: SqlRecordStore) -> None:
    trace, caller = trace_id(), os.urandom(8).hex()
    parent, parent_events = a_run(1, trace, parent_span=caller)
    child, child_events = a_run(2, trace, parent_span=parent_events[0].span_id)
    other, other_events = a_run(3, trace_id())
    await store.write_batch([parent, child, other], [*child_events, *parent_events, *other_events])

    spans = await get_trace(store, "t1", trace)
    assert [s["name"] for s in spans] == [
        "invoke_agent echo", "chat echo", "invoke_agent echo", "chat echo"
    ]  # fmt: skip
    assert [s["start_ns"] for s in spans] == sorted(s["start_ns"] for s in spans)
    run_span, chat, child_span, _ = spans
    assert (run_span["span_id"], run_span["parent_span_id"]) == (parent_events[0].span_id, caller)
    assert chat["parent_span_id"] == run_span["span_id"]
    assert child_span["parent_span_id"] == run_span["span_id"]
    assert run_span["attributes"]["shipyard.run_id"] == parent.id
    assert chat["attributes"]["gen_ai.usage.input_tokens"] == 3
    assert {s["trace_id"] for s in spans} == {trace}


async def test_a_tenant_sees_only_its_own_runs_of_a_trace(store: SqlRecordStore) -> None:
    trace = trace_id()
    mine, my_events = a_run(1, trace, tenant="t1")
    theirs, their_events = a_run(2, trace, tenant="t2")
    await store.write_batch([mine, theirs], [*my_events, *their_events])
    assert {s["attributes"]["shipyard.run_id"] for s in await get_trace(store, "t1", trace)} == {
        mine.id
    }
    assert {s["attributes"]["shipyard.run_id"] for s in await get_trace(store, "t2", trace)} == {
        theirs.id
    }
    assert await get_trace(store, "t3", trace) == []
    assert await get_trace(store, "t1", trace_id()) == []


async def test_a_run_still_going_shows_only_its_finished_steps(store: SqlRecordStore) -> None:
    trace = trace_id()
    run, events = a_run(1, trace)
    await store.write_batch([run.model_copy(update={"status": "running"})], events[:3])
    assert [s["name"] for s in await get_trace(store, "t1", trace)] == ["chat echo"]


async def test_the_store_is_a_record_store_with_the_span_role(store: SqlRecordStore) -> None:
    typed: RecordStore = store
    assert await typed.trace_events("t1", trace_id()) == []
