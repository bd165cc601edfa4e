"""``TenantPolicies``: the default policy for a tenant without a record, and the cache: a
process trusts a policy it read for ``cache_s`` (a change elsewhere is not seen meanwhile), a
cache of 0 sees every change at once, a change made through the service is seen at once, and the
callers that miss the cache together share one read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from shipyard.config import load_settings
from shipyard.runtime.tenants import TenantPolicies
from shipyard.stores.records.policy import DEFAULT_POLICY, TenantPolicy
from shipyard.stores.records.sql import SqlRecordStore

EU = TenantPolicy(region="eu")
US = TenantPolicy(region="us")
HOUR = 3600.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlRecordStore]:
    store = SqlRecordStore.from_url(f"sqlite:///{tmp_path / 'records.db'}")
    await store.migrate()
    yield store
    await store.close()


async def test_a_tenant_without_a_record_has_the_default_policy(store: SqlRecordStore) -> None:
    assert await TenantPolicies(store).policy("nobody") == DEFAULT_POLICY


async def test_a_cached_policy_is_trusted_for_cache_s(store: SqlRecordStore) -> None:
    other_process = TenantPolicies(store, cache_s=0)
    cached, uncached = TenantPolicies(store, cache_s=HOUR), TenantPolicies(store, cache_s=0)
    await other_process.put("t1", EU, changed_by="a")
    assert await cached.policy("t1") == EU and await uncached.policy("t1") == EU
    await other_process.put("t1", US, changed_by="b")
    assert await cached.policy("t1") == EU  # within its hour: the policy it read
    assert await uncached.policy("t1") == US  # no cache: the change at once


async def test_a_change_through_the_service_is_seen_by_it_at_once(store: SqlRecordStore) -> None:
    policies = TenantPolicies(store, cache_s=HOUR)
    assert await policies.policy("t1") == DEFAULT_POLICY
    await policies.put("t1", EU, changed_by="a")
    assert await policies.policy("t1") == EU


def test_the_cache_setting_is_shipyard_tenant_cache_s(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert load_settings(home=tmp_path).tenant_cache_s == 5.0
    monkeypatch.setenv("SHIPYARD_TENANT_CACHE_S", "0")
    assert load_settings(home=tmp_path).tenant_cache_s == 0.0


async def test_callers_that_miss_together_share_one_read(store: SqlRecordStore) -> None:
    await TenantPolicies(store, cache_s=0).put("t1", EU, changed_by="a")
    reads: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "tenants" in statement:
            reads.append(statement)

    engine = store._engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        policies = TenantPolicies(store, cache_s=HOUR)
        assert await asyncio.gather(*(policies.policy("t1") for _ in range(20))) == [EU] * 20
        assert len(reads) == 1
        await policies.put("t1", US, changed_by="b")
        assert await asyncio.gather(*(policies.policy("t1") for _ in range(5))) == [US] * 5
        assert len(reads) == 2
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)
