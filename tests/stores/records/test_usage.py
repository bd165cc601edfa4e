"""The usage role of the record store, on every backend (see conftest ``store``): spending since
a time, summed by agent, tenant, key (from ``run.started``) and model (from ``llm.response``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from shipyard.stores.records.base import RunRecord
from shipyard.stores.records.sql import SqlRecordStore
from shipyard.telemetry.events import Event
from tests.stores.records.test_contract import T0, make_run, run_id

TS = T0.timestamp()


def a_run(
    n: int, agent: str, model: str, cost: float, key: str | None, tenant: str = "t1"
) -> tuple[RunRecord, list[Event]]:
    rid = run_id(n)
    ids: dict[str, Any] = {"run_id": rid, "tenant_id": tenant, "agent": agent, "trace_id": "1" * 32}
    started = {"input": "hi", **({"key_id": key} if key else {})}
    events = [
        Event(type="run.started", seq=1, ts=TS + n, span_id="a" * 16, data=started, **ids),
        Event(type="llm.response", seq=2, ts=TS + n, span_id="b" * 16, data={
            "model": model, "prompt_tokens": 3, "completion_tokens": 2, "cost_usd": cost}, **ids),
    ]  # fmt: skip
    run = make_run(rid, tenant, agent=agent, status="succeeded", prompt_tokens=3,
                   completion_tokens=2, cost_usd=cost, created_at=T0)  # fmt: skip
    return run, events


@pytest.fixture
async def spent(store: SqlRecordStore) -> SqlRecordStore:
    made = [
        a_run(1, "cheap", "m:small", 0.25, "k1"),
        a_run(2, "cheap", "m:small", 0.25, "k2"),
        a_run(3, "dear", "m:large", 2.0, "k1"),
        a_run(4, "dear", "m:large", 4.0, None),
        a_run(5, "dear", "m:large", 8.0, "k9", tenant="t2"),
    ]
    rid = made[0][0].id  # its second call was answered by a model cache
    hit = Event(type="llm.cached", seq=3, ts=TS + 1, span_id="c" * 16, run_id=rid, tenant_id="t1",
                agent="cheap", trace_id="1" * 32, data={"model": "m:small", "cache": "semantic",
                "saved_usd": 0.25, "saved_tokens": 5})  # fmt: skip
    events = [e for _, found in made for e in found] + [hit]
    await store.write_batch([r for r, _ in made], events)
    return store


async def test_usage_counts_what_the_caches_saved(spent: SqlRecordStore) -> None:
    since = T0 - timedelta(seconds=1)
    by = {g: await spent.usage("t1", since=since, group_by=g) for g in ("agent", "model", "key")}
    saved = {g: {r.value: (r.cached_calls, r.saved_usd) for r in rows} for g, rows in by.items()}
    assert saved["agent"] == {"cheap": (1, 0.25), "dear": (0, 0.0)}
    assert saved["model"] == {"m:small": (1, 0.25), "m:large": (0, 0.0)}
    assert saved["key"] == {"k1": (1, 0.25), "k2": (0, 0.0), None: (0, 0.0)}
    assert [r.calls for r in by["model"]] == [2, 2]  # llm.response events only


async def test_usage_by_agent_and_tenant(spent: SqlRecordStore) -> None:
    since = T0 - timedelta(seconds=1)
    by_agent = await spent.usage("t1", since=since, group_by="agent")
    assert [(r.value, r.runs, r.cost_usd, r.prompt_tokens) for r in by_agent] == [
        ("dear", 2, 6.0, 6),
        ("cheap", 2, 0.5, 6),
    ]
    by_tenant = await spent.usage(None, since=since, group_by="tenant")
    assert [(r.value, r.cost_usd) for r in by_tenant] == [("t2", 8.0), ("t1", 6.5)]
    assert await spent.usage("t1", since=T0 + timedelta(seconds=1), group_by="agent") == []


async def test_usage_by_model_and_key(spent: SqlRecordStore) -> None:
    since = T0 - timedelta(seconds=1)
    by_model = await spent.usage("t1", since=since, group_by="model")
    assert [(r.value, r.calls, r.runs, r.cost_usd, r.completion_tokens) for r in by_model] == [
        ("m:large", 2, 2, 6.0, 4),
        ("m:small", 2, 2, 0.5, 4),
    ]
    by_key = await spent.usage("t1", since=since, group_by="key")
    assert {r.value: r.cost_usd for r in by_key} == {"k1": 2.25, None: 4.0, "k2": 0.25}


async def test_usage_over_time_in_buckets(spent: SqlRecordStore) -> None:
    """The dashboard's charts: model calls summed per bucket of time and group (runs 1-5 call
    at T0 + n seconds: with 2 s buckets from T0, runs 1 | 2, 3 | 4, 5)."""
    until = T0 + timedelta(seconds=6)
    series = await spent.usage_series("t1", since=T0, until=until, step_s=2, group_by="model")
    assert [(p.at - T0, p.value, p.calls, p.cost_usd) for p in series] == [
        (timedelta(0), "m:small", 1, 0.25),
        (timedelta(seconds=2), "m:large", 1, 2.0),
        (timedelta(seconds=2), "m:small", 1, 0.25),
        (timedelta(seconds=4), "m:large", 1, 4.0),
    ]
    everyone = await spent.usage_series(None, since=T0, until=until, step_s=2, group_by="tenant")
    assert [(p.at - T0, p.value, p.prompt_tokens) for p in everyone] == [
        (timedelta(0), "t1", 3),
        (timedelta(seconds=2), "t1", 6),
        (timedelta(seconds=4), "t1", 3),
        (timedelta(seconds=4), "t2", 3),
    ]
    by_agent = await spent.usage_series(
        "t1", since=T0 + timedelta(seconds=3), until=until, step_s=60, group_by="agent"
    )
    assert [(p.value, p.calls, p.cost_usd, p.completion_tokens) for p in by_agent] == [
        ("dear", 2, 6.0, 4)
    ]
