"""The tenant policy records (``TenantRecords``): the same assertions on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from shipyard.errors import PolicyConflict
from shipyard.stores.records.policy import Limits, TenantPolicy
from shipyard.stores.records.sql import SqlRecordStore
from tests.stores.records.test_contract import make_key

EU = TenantPolicy(region="eu-west-1", limits=Limits(requests_per_minute=60))


async def test_a_tenant_without_a_record_is_none_one_made_by_a_key_has_version_0(
    store: SqlRecordStore,
) -> None:
    assert await store.get_tenant("nobody") is None
    await store.add_api_key(make_key("t1", "k"))
    found = await store.get_tenant("t1")
    assert found is not None
    assert (found.version, found.policy, found.updated_at) == (0, TenantPolicy(), None)


async def test_put_round_trips_and_counts_versions(store: SqlRecordStore) -> None:
    first = await store.put_tenant_policy("t1", EU, expected_version=0, changed_by="cli:ops")
    assert (first.id, first.version, first.policy) == ("t1", 1, EU)
    assert first.updated_at is not None
    second = await store.put_tenant_policy(
        "t1", TenantPolicy(region="us"), expected_version=None, changed_by="key_1"
    )
    assert second.version == 2 and second.created_at == first.created_at
    assert await store.get_tenant("t1") == second


async def test_a_stale_expected_version_is_a_conflict_and_changes_nothing(
    store: SqlRecordStore,
) -> None:
    await store.put_tenant_policy("t1", EU, expected_version=0, changed_by="a")
    with pytest.raises(PolicyConflict) as caught:
        await store.put_tenant_policy("t1", TenantPolicy(), expected_version=0, changed_by="b")
    assert caught.value.details == {"tenant_id": "t1", "expected_version": 0, "version": 1}
    found = await store.get_tenant("t1")
    assert found is not None and (found.version, found.policy) == (1, EU)
    assert [c.changed_by for c in await store.list_policy_changes("t1")] == ["a"]


async def test_concurrent_writers_of_one_version_one_wins(store: SqlRecordStore) -> None:
    policies = [TenantPolicy(region=f"r{i}") for i in range(5)]
    results = await asyncio.gather(
        *(
            store.put_tenant_policy("t1", p, expected_version=0, changed_by=f"w{i}")
            for i, p in enumerate(policies)
        ),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    assert len(won) == 1 and won[0].version == 1
    assert all(isinstance(r, PolicyConflict) for r in results if r not in won)


async def test_changes_list_who_changed_what_newest_first_per_tenant(
    store: SqlRecordStore,
) -> None:
    await store.put_tenant_policy("t1", EU, expected_version=0, changed_by="cli:ops")
    await store.put_tenant_policy("t1", TenantPolicy(), expected_version=1, changed_by="key_a")
    await store.put_tenant_policy("t2", EU, expected_version=0, changed_by="key_b")
    changes = await store.list_policy_changes("t1")
    assert [(c.version, c.changed_by, c.policy) for c in changes] == [
        (2, "key_a", TenantPolicy()),
        (1, "cli:ops", EU),
    ]
    assert changes[0].at >= changes[1].at
    older = await store.list_policy_changes("t1", before_version=2)
    assert [c.version for c in older] == [1]
    assert [c.version for c in await store.list_policy_changes("t1", limit=1)] == [2]
