"""The span role of the record store contract, on every backend (see conftest ``store``)."""

from __future__ import annotations

import os
from typing import Any

from shipyard.stores.records.base import RecordStore
from shipyard.stores.records.sql import SqlRecordStore
from shipyard.telemetry.spans import SpanRow

T0 = 1_764_000_000_123_456_789  # ns: beyond 2**53, so a float column would lose digits


def trace_id() -> str:
    return os.urandom(16).hex()


def make_span(trace: str, tenant: str | None = "t1", **fields: Any) -> SpanRow:
    values: dict[str, Any] = {
        "span_id": os.urandom(8).hex(),
        "parent_span_id": None,
        "name": "invoke_agent echo",
        "kind": "internal",
        "service": "shipyard",
        "start_ns": T0,
        "end_ns": T0 + 5_000_000,
        "status": "unset",
        "status_message": None,
        "attributes": {"shipyard.tenant_id": tenant, "gen_ai.usage.input_tokens": 3},
        "events": [],
    }
    return SpanRow(trace_id=trace, tenant_id=tenant, **(values | fields))


async def test_a_trace_comes_back_whole_and_by_start_time(store: SqlRecordStore) -> None:
    trace = trace_id()
    run = make_span(trace)
    chat = make_span(
        trace,
        parent_span_id=run["span_id"],
        name="chat echo",
        kind="client",
        start_ns=T0 + 1_000,
        end_ns=T0 + 2_000,
        attributes={"gen_ai.response.finish_reasons": ["stop"], "shipyard.usage.cost_usd": 0.5},
    )
    tool = make_span(
        trace,
        parent_span_id=run["span_id"],
        name="execute_tool add",
        start_ns=T0 + 3_000,
        end_ns=T0 + 4_000,
        status="error",
        status_message="timeout",
        events=[{"name": "shipyard.guard.flag", "time_ns": T0 + 3_500, "attributes": {}}],
    )
    await store.write_spans([tool, chat])
    await store.write_spans([run])
    await store.write_spans([make_span(trace_id())])  # another trace

    assert await store.get_trace("t1", trace) == [run, chat, tool]


async def test_writes_are_idempotent_and_the_first_write_stays(store: SqlRecordStore) -> None:
    trace = trace_id()
    span = make_span(trace)
    await store.write_spans([span])
    await store.write_spans([span, {**span, "name": "rewritten"}])
    await store.write_spans([])
    assert await store.get_trace("t1", trace) == [span]


async def test_a_tenant_sees_only_its_own_spans_of_a_trace(store: SqlRecordStore) -> None:
    trace = trace_id()
    mine = make_span(trace, "t1")
    theirs = make_span(trace, "t2", parent_span_id=mine["span_id"], start_ns=T0 + 10)
    nobodys = make_span(trace, None, start_ns=T0 - 10)
    await store.write_spans([mine, theirs, nobodys])

    assert await store.get_trace("t1", trace) == [mine]
    assert await store.get_trace("t2", trace) == [theirs]
    assert await store.get_trace("t3", trace) == []
    assert await store.get_trace("t1", trace_id()) == []


async def test_the_store_is_a_record_store_with_the_span_role(store: SqlRecordStore) -> None:
    typed: RecordStore = store  # mypy checks the protocol, including the span role
    assert await typed.get_trace("t1", trace_id()) == []
