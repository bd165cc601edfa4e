"""Recording: a finished run is never lost, even when the record store fails for a while."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from shipyard import Agent
from shipyard.agents.context import RunRequest
from shipyard.errors import StoreError
from shipyard.runtime.invoke import Invoker, RunLimits
from shipyard.runtime.recorder import Recorder
from shipyard.stores.records.sql import SqlRecordStore
from shipyard.telemetry.events import new_id

AGENTS = {"echo": Agent(name="echo", model="scripted:echo")}


@pytest.fixture
async def limited_store(postgres_url: str) -> AsyncIterator[tuple[SqlRecordStore, str]]:
    """A store connected as a role whose INSERT right the test can take away and give back."""
    role = f"shipyard_rec_{secrets.token_hex(3)}"
    owner = SqlRecordStore.from_url(postgres_url)
    await owner.migrate()
    await owner.close()
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f"CREATE ROLE {role} LOGIN")
        await conn.execute(f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {role}")
    finally:
        await conn.close()
    store = SqlRecordStore.from_url(postgres_url.replace("//postgres@", f"//{role}@"))
    yield store, role
    await store.close()
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
        await conn.execute(f"DROP ROLE {role}")
    finally:
        await conn.close()


async def as_owner(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_a_run_finished_during_an_outage_is_written_when_the_store_returns(
    limited_store: tuple[SqlRecordStore, str], postgres_url: str
) -> None:
    store, role = limited_store
    recorder = Recorder(store, wait_s=0.5)
    await recorder.start()
    invoker = Invoker(AGENTS, recorder, RunLimits(default_model="scripted:echo"))
    run_id = new_id("run")

    await as_owner(postgres_url, f"REVOKE INSERT ON run_events FROM {role}")
    with pytest.raises(StoreError, match="not confirmed"):
        await invoker.invoke(
            RunRequest(tenant_id="t1", agent="echo", input="during the outage", run_id=run_id)
        )
    assert await store.get_run("t1", run_id) is None  # nothing half-written either
    # runs that finish later in the same outage queue behind the stuck batch; the second joins
    # a queue whose timer has fired: it gets a timer of its own, and fails too, not waits for ever
    later_ids = [new_id("run"), new_id("run")]
    for later_id in later_ids:
        with pytest.raises(StoreError, match="not confirmed"):
            async with asyncio.timeout(20):  # a hang fails here, not by stalling the suite
                await invoker.invoke(
                    RunRequest(tenant_id="t1", agent="echo", input="later", run_id=later_id)
                )

    await as_owner(postgres_url, f"GRANT INSERT ON run_events TO {role}")
    recorder._wait_s = 30  # the writer retries with backoff; give it time
    await recorder.durable()
    await recorder.close()

    run = await store.get_run("t1", run_id)
    assert run is not None and run.status == "succeeded" and run.output == "echo: during the outage"
    kinds = [e.type for e in await store.list_events("t1", run_id)]
    assert kinds == ["run.started", "llm.request", "llm.response", "run.completed"]
    for later_id in later_ids:
        later = await store.get_run("t1", later_id)
        assert later is not None and later.status == "succeeded"


async def test_close_flushes_what_is_pending(tmp_path: Path) -> None:
    store = SqlRecordStore.from_url(f"sqlite:///{tmp_path / 'r.db'}")
    await store.migrate()
    recorder = Recorder(store)
    await recorder.start()
    invoker = Invoker(AGENTS, recorder, RunLimits(default_model="scripted:echo"))
    outcomes = [
        await invoker.invoke(RunRequest(tenant_id="t", agent="echo", input=f"n{i}"))
        for i in range(3)
    ]
    await recorder.close()
    await store.close()

    reopened = SqlRecordStore.from_url(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        page = await reopened.list_runs("t")
        assert {r.id for r in page.items} == {o.run_id for o in outcomes}
        assert all(r.status == "succeeded" for r in page.items)
    finally:
        await reopened.close()


async def test_concurrent_runs_share_transactions(tmp_path: Path) -> None:
    """Group commit: many runs in flight are written in far fewer transactions than runs."""
    import asyncio

    store = SqlRecordStore.from_url(f"sqlite:///{tmp_path / 'r.db'}")
    await store.migrate()
    batches: list[int] = []
    write_batch = store.write_batch

    async def counting(runs, events):  # type: ignore[no-untyped-def]
        batches.append(len(runs))
        await write_batch(runs, events)

    store.write_batch = counting  # type: ignore[method-assign]
    recorder = Recorder(store)
    await recorder.start()
    invoker = Invoker(AGENTS, recorder, RunLimits(default_model="scripted:echo"))
    await asyncio.gather(
        *(invoker.invoke(RunRequest(tenant_id="t", agent="echo", input=str(i))) for i in range(100))
    )
    await recorder.close()
    page = await store.list_runs("t", limit=500)
    await store.close()
    assert len(page.items) == 100
    assert len(batches) < 50, batches


@pytest.mark.postgres
async def test_a_run_the_store_refuses_is_stored_without_its_data_and_blocks_nothing(
    postgres_url: str,
) -> None:
    store = SqlRecordStore.from_url(postgres_url)
    await store.migrate()
    recorder = Recorder(store, wait_s=10)
    await recorder.start()
    invoker = Invoker(AGENTS, recorder, RunLimits(default_model="scripted:echo"))
    try:
        # PostgreSQL text cannot hold NUL: the output "echo: bad\x00input" is refused.
        bad = await invoker.invoke(
            RunRequest(tenant_id="t-nul", agent="echo", input="bad\x00input")
        )
        good = await invoker.invoke(RunRequest(tenant_id="t-nul", agent="echo", input="fine"))
        stored_bad = await store.get_run("t-nul", bad.run_id)
        stored_good = await store.get_run("t-nul", good.run_id)
    finally:
        await recorder.close()
        await store.close()
    assert stored_good is not None and stored_good.output == "echo: fine"
    assert stored_bad is not None and stored_bad.status == "succeeded"
    assert stored_bad.output is None and "unrecordable" in stored_bad.metadata
