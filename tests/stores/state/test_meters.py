"""The ``Meters`` contract (budgets), on every state store backend: holds all or nothing,
charges that use a hold up first, holds that expire, and no overshoot under concurrency."""

from __future__ import annotations

import asyncio

from shipyard.stores.state.base import StateStore
from shipyard.stores.state.meters import Level, Meter

DAY = Meter("{t}:budget:tenant:d:usd", limit=100, keep_s=3600)
KEY = Meter("{t}:budget:key:k1:d:usd", limit=30, keep_s=3600)
LONG = 60.0


async def test_a_hold_takes_room_on_every_meter_or_none(store: StateStore) -> None:
    assert await store.hold([DAY, KEY], "run-a", [20, 20], ttl_s=LONG) is None
    assert await store.hold([DAY, KEY], "run-b", [20, 20], ttl_s=LONG) == 1  # the key is full
    assert await store.levels([DAY.key, KEY.key]) == [Level(0, 20), Level(0, 20)]
    assert await store.hold([DAY], "run-b", [80], ttl_s=LONG) is None
    assert await store.hold([DAY], "run-c", [1], ttl_s=LONG) == 0
    assert await store.levels(["{t}:never-used"]) == [Level(0, 0)]


async def test_a_charge_uses_the_hold_first_and_counts_past_the_limit(store: StateStore) -> None:
    assert await store.hold([DAY], "run-a", [40], ttl_s=LONG) is None
    await store.charge([DAY], "run-a", [15])
    assert await store.levels([DAY.key]) == [Level(15, 25)]
    await store.charge([DAY], "run-a", [30])  # past its hold: the hold is used up
    assert await store.levels([DAY.key]) == [Level(45, 0)]
    await store.charge([DAY], "nobody", [70])  # spending happened: counted past the limit
    assert await store.levels([DAY.key]) == [Level(115, 0)]
    assert await store.hold([DAY], "run-b", [0], ttl_s=LONG) == 0


async def test_release_gives_the_rest_of_a_hold_back(store: StateStore) -> None:
    assert await store.hold([DAY, KEY], "run-a", [30, 30], ttl_s=LONG) is None
    await store.charge([DAY, KEY], "run-a", [10, 10])
    await store.release([DAY.key, KEY.key], "run-a")
    assert await store.levels([DAY.key, KEY.key]) == [Level(10, 0), Level(10, 0)]
    await store.release([DAY.key], "run-a")  # twice: nothing more
    assert await store.hold([DAY, KEY], "run-b", [20, 20], ttl_s=LONG) is None


async def test_a_hold_nobody_released_expires(store: StateStore) -> None:
    assert await store.hold([DAY], "crashed", [100], ttl_s=0.2) is None
    assert await store.hold([DAY], "run-b", [1], ttl_s=LONG) == 0
    await asyncio.sleep(0.35)
    assert await store.levels([DAY.key]) == [Level(0, 0)]
    assert await store.hold([DAY], "run-b", [100], ttl_s=LONG) is None


async def test_holds_of_one_holder_add_up(store: StateStore) -> None:
    assert await store.hold([DAY], "run-a", [30], ttl_s=LONG) is None
    assert await store.hold([DAY], "run-a", [30], ttl_s=LONG) is None
    assert await store.levels([DAY.key]) == [Level(0, 60)]
    assert await store.hold([DAY], "run-a", [41], ttl_s=LONG) == 0


async def test_concurrent_holds_never_pass_the_limit(store: StateStore) -> None:
    meter = Meter("{t}:budget:race", limit=10, keep_s=3600)
    held = await asyncio.gather(
        *(store.hold([meter], f"run-{i}", [1], ttl_s=LONG) for i in range(40))
    )
    assert sum(1 for h in held if h is None) == 10
    assert await store.levels([meter.key]) == [Level(0, 10)]
