"""The memory store contract, the same assertions on SQLite + sqlite-vec and PostgreSQL +
pgvector: scoping and tenant isolation, hybrid ranking, TTL, filters, paging, erasure, pruning."""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shipyard.errors import ConfigError, InvalidInput, StoreError
from shipyard.stores.memory.base import MemoryItem, MemoryScope, MemoryStore, SearchOptions
from tests.stores.memory.conftest import OpenStore


def vec(*values: float) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


NORTH, EAST, NORTH_EAST = vec(1, 0, 0, 0), vec(0, 1, 0, 0), vec(1, 1, 0, 0)


async def put(
    store: MemoryStore,
    tenant: str,
    text: str,
    embedding: Sequence[float] = NORTH,
    *,
    agent: str = "",
    subject: str = "",
    metadata: Mapping[str, Any] | None = None,
    age_s: float = 0,
    ttl_s: float | None = None,
) -> MemoryItem:
    created = datetime.now(UTC) - timedelta(seconds=age_s)
    item = MemoryItem(
        id=f"mem_{created.timestamp():017.6f}{secrets.token_hex(4)}",
        tenant_id=tenant,
        text=text,
        created_at=created,
        updated_at=created,
        agent=agent,
        subject=subject,
        metadata=dict(metadata or {}),
        expires_at=None if ttl_s is None else created + timedelta(seconds=ttl_s),
    )
    await store.add(item, embedding)
    return item


async def test_add_get_update_delete(store: MemoryStore, tenant: str) -> None:
    item = await put(store, tenant, "likes green tea", agent="a", subject="u1", metadata={"k": 1})
    found = await store.get(tenant, item.id)
    assert found is not None
    assert (found.text, found.agent, found.subject, dict(found.metadata)) == (
        "likes green tea", "a", "u1", {"k": 1},
    )  # fmt: skip
    assert abs((found.created_at - item.created_at).total_seconds()) < 0.001
    changed = MemoryItem(
        id=item.id, tenant_id=tenant, text="likes black tea", created_at=item.created_at,
        updated_at=datetime.now(UTC), agent="a", subject="u1", metadata={"k": 2},
    )  # fmt: skip
    assert await store.update(changed, EAST)
    again = await store.get(tenant, item.id)
    assert again is not None and again.text == "likes black tea" and again.metadata == {"k": 2}
    hits = await store.search(MemoryScope(tenant), EAST, "black", SearchOptions(hybrid=False))
    assert hits[0].item.id == item.id and hits[0].score == pytest.approx(1.0)
    assert await store.delete(tenant, item.id)
    assert await store.get(tenant, item.id) is None
    assert not await store.delete(tenant, item.id)
    assert not await store.update(changed)


async def test_two_tenants_with_identical_texts_never_see_each_other(store: MemoryStore) -> None:
    one, two = f"a-{secrets.token_hex(3)}", f"b-{secrets.token_hex(3)}"
    mine = [await put(store, one, f"the password hint is blue {i}", subject="u") for i in range(3)]
    theirs = [
        await put(store, two, f"the password hint is blue {i}", subject="u") for i in range(3)
    ]
    for tenant, own, other in ((one, mine, theirs), (two, theirs, mine)):
        own_ids, other_ids = {m.id for m in own}, {m.id for m in other}
        hits = await store.search(
            MemoryScope(tenant), NORTH, "password hint blue", SearchOptions(limit=10)
        )
        assert {h.item.id for h in hits} == own_ids
        listed = await store.list(MemoryScope(tenant, subject="u"), limit=10)
        assert {m.id for m in listed} == own_ids
        for other_id in other_ids:
            assert await store.get(tenant, other_id) is None
            assert not await store.delete(tenant, other_id)
        assert all(h.item.tenant_id == tenant for h in hits)
    assert await store.erase_subject(one, "u") == 3
    assert len(await store.list(MemoryScope(two), limit=10)) == 3


async def test_hybrid_search_finds_the_keyword_that_vectors_miss(
    store: MemoryStore, tenant: str
) -> None:
    near = await put(store, tenant, "what is the status of my order", NORTH)
    keyed = await put(store, tenant, "parcel ZX4471 left the warehouse", NORTH_EAST)
    for i in range(5):
        await put(store, tenant, f"unrelated note number {i}", EAST)
    scope = MemoryScope(tenant)
    vector_only = await store.search(scope, NORTH, "ZX4471", SearchOptions(limit=2, hybrid=False))
    assert [h.item.id for h in vector_only] == [near.id, keyed.id]
    hybrid = await store.search(scope, NORTH, "ZX4471", SearchOptions(limit=2))
    assert [h.item.id for h in hybrid] == [keyed.id, near.id]
    assert hybrid[0].score > hybrid[1].score


async def test_recency_weighting_prefers_the_newer_memory(store: MemoryStore, tenant: str) -> None:
    old = await put(store, tenant, "lives in Paris", NORTH, age_s=30 * 86400)
    new = await put(store, tenant, "lives in Lyon", NORTH_EAST)
    plain = await store.search(MemoryScope(tenant), NORTH, "lives", SearchOptions(hybrid=False))
    assert [h.item.id for h in plain] == [old.id, new.id]
    weighted = SearchOptions(hybrid=False, recency_half_life_s=7 * 86400)
    recent = await store.search(MemoryScope(tenant), NORTH, "lives", weighted)
    assert [h.item.id for h in recent] == [new.id, old.id]


async def test_expired_memories_are_never_returned_and_are_pruned(
    store: MemoryStore, tenant: str
) -> None:
    gone = await put(store, tenant, "a passing thought", ttl_s=-1)
    kept = await put(store, tenant, "a lasting thought", ttl_s=3600)
    assert await store.get(tenant, gone.id) is None
    assert [m.id for m in await store.list(MemoryScope(tenant), limit=10)] == [kept.id]
    hits = await store.search(MemoryScope(tenant), NORTH, "passing thought", SearchOptions())
    assert [h.item.id for h in hits] == [kept.id]
    assert not await store.update(gone)
    assert await store.prune(tenant, datetime.now(UTC) - timedelta(days=1)) == 1
    assert await store.get(tenant, kept.id) is not None


async def test_prune_deletes_what_is_older_than_the_cutoff(store: MemoryStore) -> None:
    one, two = f"p-{secrets.token_hex(3)}", f"q-{secrets.token_hex(3)}"
    for tenant in (one, two):
        await put(store, tenant, "old", age_s=10 * 86400)
        await put(store, tenant, "new")
    cutoff = datetime.now(UTC) - timedelta(days=5)
    assert await store.prune(one, cutoff) == 1
    assert [m.text for m in await store.list(MemoryScope(two), limit=5)] == ["new", "old"]
    assert await store.prune(None, cutoff) >= 1  # every tenant
    assert [m.text for m in await store.list(MemoryScope(two), limit=5)] == ["new"]
    assert [m.text for m in await store.list(MemoryScope(one), limit=5)] == ["new"]


async def test_scope_and_metadata_filters(store: MemoryStore, tenant: str) -> None:
    a = await put(store, tenant, "a fact", agent="helper", subject="u1", metadata={"kind": "pref"})
    b = await put(store, tenant, "a fact", agent="helper", subject="u2", metadata={"kind": "pref"})
    c = await put(store, tenant, "a fact", agent="other", subject="u1", metadata={"kind": "note"})
    d = await put(store, tenant, "a fact", agent="helper", subject="u1", metadata={"n": 3})

    async def ids(**scope: Any) -> set[str]:
        found = await store.search(
            MemoryScope(tenant, **scope), NORTH, "fact", SearchOptions(limit=10)
        )
        listed = await store.list(MemoryScope(tenant, **scope), limit=10)
        assert {h.item.id for h in found} == {m.id for m in listed}
        return {m.id for m in listed}

    assert await ids(agent="helper") == {a.id, b.id, d.id}
    assert await ids(subject="u1") == {a.id, c.id, d.id}
    assert await ids(agent="helper", subject="u1") == {a.id, d.id}
    assert await ids(filters={"kind": "pref"}) == {a.id, b.id}
    assert await ids(filters={"kind": "pref"}, subject="u2") == {b.id}
    assert await ids(filters={"n": 3}) == {d.id}
    assert await ids(filters={"n": 4}) == set()
    with pytest.raises(InvalidInput):
        MemoryScope(tenant, filters={"bad key'": 1})


async def test_list_pages_newest_first(store: MemoryStore, tenant: str) -> None:
    made = [await put(store, tenant, f"note {i}", age_s=100 - i) for i in range(5)]
    first = await store.list(MemoryScope(tenant), limit=2)
    assert [m.id for m in first] == [made[4].id, made[3].id]
    rest = await store.list(MemoryScope(tenant), limit=10, before=first[-1].id)
    assert [m.id for m in rest] == [made[2].id, made[1].id, made[0].id]


async def test_erase_subject_removes_only_that_subject(store: MemoryStore, tenant: str) -> None:
    await put(store, tenant, "marker-42 one", subject="alice")
    await put(store, tenant, "marker-42 two", subject="alice", agent="x")
    bob = await put(store, tenant, "marker-42 three", subject="bob")
    assert await store.erase_subject(tenant, "alice") == 2
    hits = await store.search(MemoryScope(tenant), NORTH, "marker", SearchOptions(limit=10))
    assert [h.item.id for h in hits] == [bob.id]
    assert await store.erase_subject(tenant, "alice") == 0


async def test_a_store_built_by_another_embedder_is_refused(
    open_store: OpenStore, tenant: str
) -> None:
    first = open_store()
    await put(first, tenant, "x")
    await first.close()
    other = open_store(embedder="wordllama:l2_supercat?dim=64", dimensions=4)
    with pytest.raises(ConfigError, match="test:4"):
        await other.ping()
    await other.close()
    with pytest.raises(InvalidInput):
        store = open_store()
        try:
            await store.add(
                MemoryItem(
                    id="mem_x",
                    tenant_id=tenant,
                    text="x",
                    created_at=datetime.now(UTC),
                    updated_at=datetime.now(UTC),
                ),
                [1.0, 0.0],
            )
        finally:
            await store.close()


async def test_concurrent_first_calls_share_one_opening(open_store: OpenStore, tenant: str) -> None:
    store = open_store()
    try:
        made = await asyncio.gather(*(put(store, tenant, f"note {i}") for i in range(8)))
        listed = await store.list(MemoryScope(tenant), limit=20)
        assert {m.id for m in listed} == {m.id for m in made}
    finally:
        await store.close()


async def test_add_many_adds_all_or_none(store: MemoryStore, tenant: str) -> None:
    now = datetime.now(UTC)

    def item(n: int) -> MemoryItem:
        return MemoryItem(
            id=f"mem_many_{tenant}_{n}", tenant_id=tenant, text=f"fact {n}", created_at=now,
            updated_at=now,
        )  # fmt: skip

    await store.add_many([(item(1), NORTH), (item(2), EAST)])
    hits = await store.search(MemoryScope(tenant), EAST, "", SearchOptions(hybrid=False))
    assert [h.item.id for h in hits] == [item(2).id, item(1).id]
    with pytest.raises(InvalidInput):  # a vector of the wrong size: nothing of the batch is kept
        await store.add_many([(item(3), NORTH), (item(4), [1.0])])
    with pytest.raises(StoreError):  # an id already there, after a new one: neither is kept
        await store.add_many([(item(3), NORTH), (item(1), NORTH)])
    assert await store.get(tenant, item(3).id) is None
