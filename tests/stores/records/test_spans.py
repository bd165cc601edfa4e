"""The span role of the record store contract, on every backend (see conftest ``store``): a
trace's spans come back from its runs' stored events, the tenant's only."""

from __future__ import annotations

import os
from typing import Any

from shipyard.stores.records.base import RecordStore, RunRecord
from shipyard.stores.records.sql import SqlRecordStore
from shipyard.telemetry.events import Event
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


async def test_a_trace_comes_back_as_spans_by_start_time(store: SqlRecordStore) -> None:
    trace, caller = trace_id(), os.urandom(8).hex()
    parent, parent_events = a_run(1, trace, parent_span=caller)
    child, child_events = a_run(2, trace, parent_span=parent_events[0].span_id)
    other, other_events = a_run(3, trace_id())
    await store.write_batch([parent, child, other], [*child_events, *parent_events, *other_events])

    spans = await store.get_trace("t1", trace)
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
    assert {s["attributes"]["shipyard.run_id"] for s in await store.get_trace("t1", trace)} == {
        mine.id
    }
    assert {s["attributes"]["shipyard.run_id"] for s in await store.get_trace("t2", trace)} == {
        theirs.id
    }
    assert await store.get_trace("t3", trace) == []
    assert await store.get_trace("t1", trace_id()) == []


async def test_a_run_still_going_shows_only_its_finished_steps(store: SqlRecordStore) -> None:
    trace = trace_id()
    run, events = a_run(1, trace)
    await store.write_batch([run.model_copy(update={"status": "running"})], events[:3])
    assert [s["name"] for s in await store.get_trace("t1", trace)] == ["chat echo"]


async def test_the_store_is_a_record_store_with_the_span_role(store: SqlRecordStore) -> None:
    typed: RecordStore = store
    assert await typed.get_trace("t1", trace_id()) == []
