"""The ``Rates`` and ``Slots`` contract: the same assertions on every backend (conftest ``store``).

Waits use TTLs of a fraction of a second, as the main contract does; the other numbers come
from the GCRA arithmetic (a limit of 3 per minute: one unit back every 20 s).
"""

from __future__ import annotations

import asyncio

import pytest

from shipyard.stores.state.base import Rate, StateStore

from .test_contract import LONG, SHORT, WAIT

MINUTE = 60.0


async def test_a_burst_up_to_the_limit_then_a_refusal(store: StateStore) -> None:
    rate = Rate("t:requests", limit=3, period_s=MINUTE)
    seen = [await store.take([rate]) for _ in range(3)]
    assert [q.allowed for q in seen] == [True] * 3
    assert [q.remaining for q in seen] == [2, 1, 0]
    assert all(q.limit == 3 and q.retry_after_s == 0 for q in seen)
    assert MINUTE - 1 < seen[-1].reset_s <= MINUTE  # whole again a period after the burst
    refused = await store.take([rate])
    assert not refused.allowed and refused.remaining == 0 and refused.limit == 3
    assert 19 < refused.retry_after_s <= 20  # the first unit comes back after 60 / 3 s
    again = await store.take([rate])
    assert not again.allowed  # a refusal spends nothing, and changes nothing


async def test_a_step_that_is_no_round_number_counts_exactly(store: StateStore) -> None:
    rate = Rate("sevenths", limit=7, period_s=MINUTE)  # one back every 8.571428... s
    seen = [await store.take([rate]) for _ in range(7)]
    assert [q.remaining for q in seen] == [6, 5, 4, 3, 2, 1, 0]
    assert all(q.allowed for q in seen)
    assert not (await store.take([rate])).allowed


async def test_keys_are_separate(store: StateStore) -> None:
    assert (await store.take([Rate("a", 1, MINUTE)])).allowed
    assert not (await store.take([Rate("a", 1, MINUTE)])).allowed
    assert (await store.take([Rate("b", 1, MINUTE)])).allowed


async def test_several_rates_are_taken_all_or_nothing(store: StateStore) -> None:
    tenant, key = Rate("tenant", 5, MINUTE), Rate("key", 2, MINUTE)
    assert (await store.take([tenant, key])).remaining == 1  # the tighter one is reported
    assert (await store.take([tenant, key])).remaining == 0
    refused = await store.take([tenant, key])
    assert not refused.allowed and refused.limit == 2
    alone = await store.take([tenant])  # the refusal spent none of the tenant's
    assert alone.allowed and alone.remaining == 2


async def test_a_cost_is_spent_at_once(store: StateStore) -> None:
    tokens = Rate("tokens", 100, MINUTE)
    assert (await store.take([tokens], 60)).remaining == 40
    refused = await store.take([tokens], 50)
    assert not refused.allowed and refused.remaining == 40
    assert 5 < refused.retry_after_s <= 6  # 10 tokens short, one back every 0.6 s
    assert (await store.take([tokens], 40)).remaining == 0


async def test_force_spends_past_the_limit_and_cost_zero_only_asks(store: StateStore) -> None:
    tokens = Rate("tokens", 100, MINUTE)
    assert (await store.take([tokens], 0)).allowed  # nothing spent yet
    assert (await store.take([tokens], 0)).remaining == 100  # asking spent nothing
    assert (await store.take([tokens], 90)).remaining == 10
    assert (await store.take([tokens], 0)).allowed  # one unit is left
    forced = await store.take([tokens], 30, force=True)  # used: counted even over the limit
    assert forced.allowed and forced.remaining == 0
    assert MINUTE < forced.reset_s <= MINUTE * 1.2 + 0.01
    owed = await store.take([tokens], 0)
    assert not owed.allowed
    assert 12 < owed.retry_after_s <= 12.6  # 20 over, plus one unit: 21 x 0.6 s


async def test_a_rate_comes_back_with_time(store: StateStore) -> None:
    rate = Rate("fast", 2, SHORT)
    assert (await store.take([rate])).allowed
    assert (await store.take([rate])).allowed
    assert not (await store.take([rate])).allowed
    await asyncio.sleep(WAIT)
    back = await store.take([rate])
    assert back.allowed and back.remaining == 1


async def test_a_take_is_atomic_under_concurrency(store: StateStore) -> None:
    rate = Rate("busy", 10, MINUTE)
    taken = await asyncio.gather(*(store.take([rate]) for _ in range(25)))
    assert sum(q.allowed for q in taken) == 10


async def test_bad_takes_are_refused(store: StateStore) -> None:
    with pytest.raises(ValueError):
        await store.take([])
    with pytest.raises(ValueError):
        await store.take([Rate("x", 1, MINUTE)], -1)
    with pytest.raises(ValueError):
        await store.take([Rate("x", 0, MINUTE)])


async def test_slots_are_capped(store: StateStore) -> None:
    assert await store.acquire_slot("t", "run-a", limit=2, ttl_s=LONG) == 1
    assert await store.acquire_slot("t", "run-b", limit=2, ttl_s=LONG) == 2
    assert await store.acquire_slot("t", "run-c", limit=2, ttl_s=LONG) == 0
    assert await store.acquire_slot("t", "run-a", limit=2, ttl_s=LONG) == 2  # a holder renews
    assert await store.acquire_slot("other", "run-c", limit=2, ttl_s=LONG) == 1
    assert await store.release_slot("t", "run-a")
    assert not await store.release_slot("t", "run-a")
    assert await store.acquire_slot("t", "run-c", limit=2, ttl_s=LONG) == 2


async def test_a_slot_nobody_released_expires(store: StateStore) -> None:
    assert await store.acquire_slot("t", "crashed", limit=1, ttl_s=SHORT) == 1
    assert await store.acquire_slot("t", "next", limit=1, ttl_s=LONG) == 0
    await asyncio.sleep(WAIT)
    assert await store.acquire_slot("t", "next", limit=1, ttl_s=LONG) == 1
    assert not await store.release_slot("t", "crashed")


async def test_slots_hold_under_concurrency(store: StateStore) -> None:
    got = await asyncio.gather(
        *(store.acquire_slot("t", f"run-{i}", limit=3, ttl_s=LONG) for i in range(12))
    )
    assert sum(1 for n in got if n) == 3
