"""Tenants' retention swept in every store, on the embedded stores (SQLite records and state, a
folder of blobs) and on the servers (PostgreSQL, Redis, S3 on SeaweedFS).

Each tenant's periods come from its policy, else from the server's ``SHIPYARD_RETENTION_*``;
a sweep deletes what is past them — runs and events, finished tasks with their moves, the
outbox's settled webhooks, sessions with their history in the state store, artifacts' records
and bytes — and nothing else. Sweeps are made "two days from now" (``sweep(now=...)``), so what
the test writes now is two days old to them; one test waits for a real, old row instead.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shipyard import Agent
from shipyard.agents.context import RunRequest
from shipyard.app import App, build_services
from shipyard.config import load_settings
from shipyard.runtime.lifecycle import RecordPruning
from shipyard.runtime.retention import TenantRetention
from shipyard.runtime.services import Services
from shipyard.runtime.sessions import history_keys
from shipyard.stores.records.base import RunRecord, TaskRecord
from shipyard.stores.records.policy import Retention, TenantPolicy
from tests.api.test_subjects import options, pgvector_url
from tests.runtime.test_retention import delivery
from tests.stores.blobs.conftest import S3_KEYS, s3_store
from tests.stores.state.conftest import redis_store

__all__ = ["options", "pgvector_url"]

APP = App(agents=[Agent(name="echo", model="scripted:echo")])
LATER = datetime.now(UTC) + timedelta(days=2)


@pytest.fixture
async def services(
    options: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Services]:
    if "database_url" in options:
        await (await redis_store()).close()  # skips (or fails) when Redis is down
        await (await s3_store("eu-a")).close()  # or SeaweedFS
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEYS["access_key_id"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_KEYS["secret_access_key"])
    settings = load_settings(
        home=tmp_path,
        log_events=False,
        metrics=False,
        tenant_cache_s=0,
        retention_sweep_s=3600,
        retention_sessions_days=7,  # a default the tenants' policies override
        **options,
    )
    built = build_services(APP, settings)
    await built.records.migrate()
    await built.start()
    try:
        yield built
    finally:
        await built.close()


def tenant_name(stem: str) -> str:
    return f"{stem}-{secrets.token_hex(3)}"  # the PostgreSQL database is the session's


async def with_policy(services: Services, tenant: str, **days: int) -> None:
    policy = TenantPolicy(retention=Retention(**days))  # type: ignore[arg-type]
    await services.tenants.put(tenant, policy, changed_by="test")


async def a_run(services: Services, tenant: str) -> str:
    outcome = await services.invoker.invoke(RunRequest(tenant_id=tenant, agent="echo", input="x"))
    return outcome.run_id


async def a_finished_task(services: Services, tenant: str, status: str = "succeeded") -> str:
    now = datetime.now(UTC)
    task = TaskRecord(
        id=f"task_{secrets.token_hex(8)}",
        tenant_id=tenant,
        agent="echo",
        status=status,  # type: ignore[arg-type]
        created_at=now,
        updated_at=now,
    )
    await services.records.create_task(task)
    return task.id


def sweeper(services: Services) -> TenantRetention:
    assert services.retention is not None
    return services.retention


async def test_a_sweep_deletes_the_records_past_each_tenants_periods(services: Services) -> None:
    short, kept = tenant_name("short"), tenant_name("kept")
    await with_policy(services, short, runs_days=1, tasks_days=1, webhooks_days=1)
    await with_policy(services, kept, runs_days=3, tasks_days=3, events_days=1)
    gone_run, new_run = await a_run(services, short), await a_run(services, kept)
    old_task, new_task = (
        await a_finished_task(services, short),
        await a_finished_task(services, kept),
    )
    queued = await a_finished_task(services, short, status="queued")
    await services.records.add_webhook(delivery(old_task, tenant_id=short, status="delivered"))

    deleted = await sweeper(services).sweep(now=LATER)

    records = services.records
    assert await records.get_run(short, gone_run) is None
    assert await records.list_events(short, gone_run) == []
    assert await records.get_task(short, old_task) is None
    assert await records.task_transitions(short, old_task) == []
    assert await records.get_task(short, queued) is not None  # not finished: kept
    assert (await records.get_run(kept, new_run)) is not None
    assert await records.list_events(kept, new_run) == []  # its events had one day
    assert await records.get_task(kept, new_task) is not None
    assert deleted["runs"] >= 1 and deleted["tasks"] >= 1 and deleted["events"] >= 1
    assert deleted["webhooks"] == 0  # the task's deletion took its delivery with it


async def test_a_sweep_deletes_sessions_with_their_history(services: Services) -> None:
    short, default = tenant_name("short"), tenant_name("default")
    await with_policy(services, short, sessions_days=1)
    await with_policy(services, default, runs_days=30)  # sessions: the server's 7 days
    made = {}
    for tenant in (short, default):
        session = await services.sessions.create(tenant, "echo", metadata={}, ttl_s=None)
        await services.sessions.turn(RunRequest.turn(tenant, session.id, "remember me"))
        made[tenant] = session.id
    meta, history = history_keys(made[short])
    assert await services.state.range(history)  # the history is there

    await sweeper(services).sweep(now=LATER)

    assert await services.state.get(meta) is None
    assert await services.state.range(history) == []
    assert await services.records.get_session(short, made[short]) is None
    kept_meta, kept_history = history_keys(made[default])
    assert await services.state.get(kept_meta) is not None
    assert await services.state.range(kept_history)
    assert await services.records.get_session(default, made[default]) is not None


async def test_a_sweep_deletes_artifacts_records_and_bytes(services: Services) -> None:
    short, kept = tenant_name("short"), tenant_name("kept")
    await with_policy(services, short, artifacts_days=1)
    await with_policy(services, kept, artifacts_days=5)
    artifacts = services.artifacts
    assert artifacts is not None
    old = await artifacts.put(short, b"old bytes", name="old.txt")
    new = await artifacts.put(kept, b"new bytes", name="new.txt")

    deleted = await sweeper(services).sweep(now=LATER)

    assert deleted["artifacts"] == 1
    store = artifacts.blobs.stores[old.region]
    assert await services.records.get_artifact(short, old.id) is None
    assert await store.head(old.blob_key) is None
    assert await services.records.get_artifact(kept, new.id) is not None
    assert await store.head(new.blob_key) is not None


async def old_run(services: Services, tenant: str) -> str:
    long_ago = datetime.now(UTC) - timedelta(days=2)
    run_id = f"run_{secrets.token_hex(8)}"
    old = RunRecord(
        id=run_id, tenant_id=tenant, agent="echo", status="succeeded", created_at=long_ago
    )
    await services.records.write_batch([old], [])
    return run_id


async def test_a_started_process_sweeps_by_itself(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, log_events=False, metrics=False, retention_sweep_s=0.1)
    built = build_services(APP, settings)
    await built.records.migrate()
    tenant = tenant_name("acme")
    await with_policy(built, tenant, runs_days=1)
    run_id = await old_run(built, tenant)
    await built.start()
    try:
        for _ in range(100):
            if await built.records.get_run(tenant, run_id) is None:
                break
            await asyncio.sleep(0.05)
        assert await built.records.get_run(tenant, run_id) is None
    finally:
        await built.close()


async def test_one_process_sweeps_at_a_time(services: Services) -> None:
    tenant = tenant_name("acme")
    await with_policy(services, tenant, runs_days=1)
    first = sweeper(services)
    now = datetime.now(UTC)
    await first.sweep_unless_taken(now)  # takes the lease for an hour (retention_sweep_s)
    run_id = await old_run(services, tenant)
    known = services.records.lifecycle
    other = TenantRetention(services.tenants, known, {}, every_s=3600, state=services.state)
    other.add("runs", RecordPruning(known, known.prune_runs))  # another process's sweeper
    assert await other.sweep_unless_taken(now) == 0
    assert await services.records.get_run(tenant, run_id) is not None  # nobody swept
    assert (await other.sweep(now))["runs"] == 1  # without the lease, it would have


async def test_no_sweeper_when_the_sweep_is_off(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, log_events=False, retention_sweep_s=0)
    built = build_services(APP, settings)
    try:
        assert built.retention is None and built.eraser is not None
    finally:
        await built.close()


async def test_a_sessions_ttl_never_outlasts_its_tenants_retention(services: Services) -> None:
    short, default, none = tenant_name("short"), tenant_name("default"), tenant_name("none")
    await with_policy(services, short, sessions_days=1)
    two_days = 2 * 86400.0
    capped = await services.sessions.create(short, "echo", metadata={}, ttl_s=two_days)
    assert capped.ttl_s == 86400.0
    meta, _ = history_keys(capped.id)
    left = await services.state.ttl(meta)
    assert left is not None and left <= 86400.0
    long = 8 * 86400.0  # the server's default retention of sessions is 7 days
    by_default = await services.sessions.create(default, "echo", metadata={}, ttl_s=long)
    assert by_default.ttl_s == 7 * 86400.0
    short_ask = await services.sessions.create(none, "echo", metadata={}, ttl_s=60)
    assert short_ask.ttl_s == 60  # a shorter TTL stays as asked
