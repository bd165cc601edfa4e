"""Request rates taken in batches (``TakeBatcher``) on both state stores: the takes of one
moment share one store call, and at a limit's edge exactly as many are admitted as there are
units left, as single takes would."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from shipyard.runtime.take_batch import TakeBatcher
from shipyard.stores.state.base import Quota, Rate, StateStore


class Counted:
    """The real store, with its takes counted (what reaches the store is the point here)."""

    def __init__(self, store: StateStore) -> None:
        self.store, self.calls = store, 0

    async def take(self, rates: Sequence[Rate], cost: int = 1, *, force: bool = False) -> Quota:
        self.calls += 1
        return await self.store.take(rates, cost, force=force)


async def test_concurrent_takes_of_the_same_rates_share_one_store_call(store: StateStore) -> None:
    counted = Counted(store)
    batcher = TakeBatcher(counted)
    rates = [Rate("{t}:requests:1000", 1000, 60.0), Rate("{t}:key:k:requests:500", 500, 60.0)]
    quotas = await asyncio.gather(*(batcher.take(rates) for _ in range(20)))
    assert counted.calls == 1
    assert all(q.allowed for q in quotas)
    # as 20 single takes in a row: each saw one unit fewer of the key's 500 than the one before
    left = [q.remaining for q in quotas]
    assert left == list(range(left[0], left[0] - 20, -1))
    assert 498 <= left[0] <= 499  # (GCRA's float sums may round a unit down)
    assert all(q.key == "{t}:key:k:requests:500" for q in quotas)
    assert quotas[0].reset_s < quotas[-1].reset_s
    after = await store.take(rates, 0)  # a peek: 20 units were spent, no more
    assert abs(after.remaining - left[-1]) <= 1


async def test_at_the_limits_edge_exactly_what_is_left_is_admitted(store: StateStore) -> None:
    counted = Counted(store)
    batcher = TakeBatcher(counted)
    rates = [Rate("{t}:requests:10", 10, 60.0)]
    assert (await store.take(rates, 4)).allowed  # 6 left
    quotas = await asyncio.gather(*(batcher.take(rates) for _ in range(9)))
    assert [q.allowed for q in quotas] == [True] * 6 + [False] * 3
    assert [q.remaining for q in quotas[:6]] == [5, 4, 3, 2, 1, 0]
    assert all(q.retry_after_s > 0 for q in quotas[6:])
    assert counted.calls == 1 + 9  # the batch of 9 did not fit: one try, then single takes


async def test_different_rates_are_taken_apart_and_later_takes_start_a_new_batch(
    store: StateStore,
) -> None:
    counted = Counted(store)
    batcher = TakeBatcher(counted)
    one, other = [Rate("{a}:requests:5", 5, 60.0)], [Rate("{b}:requests:5", 5, 60.0)]
    first = await asyncio.gather(*(batcher.take(r) for r in (one, other, one, other)))
    assert [q.remaining for q in first] == [4, 4, 3, 3]
    assert counted.calls == 2
    assert (await batcher.take(one)).remaining == 2
    assert counted.calls == 3


async def test_a_store_failure_reaches_every_waiter_of_the_batch(tmp_path: object) -> None:
    class Down:
        async def take(self, rates: Sequence[Rate], cost: int = 1, *, force: bool = False) -> Quota:
            raise ConnectionError("the state store is down")

    batcher = TakeBatcher(Down())
    found = await asyncio.gather(
        *(batcher.take([Rate("{t}:r:5", 5, 60.0)]) for _ in range(3)), return_exceptions=True
    )
    assert [type(e) for e in found] == [ConnectionError] * 3
