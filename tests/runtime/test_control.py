"""Stop words through the control channel, on the real Redis: one subscription per process
however many runs watch, a word reaches only its target's runs, a word after the run ended
changes nothing, and a word heard before the run started means it never starts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
import redis.asyncio as aioredis

from shipyard.errors import ShipyardError
from shipyard.runtime.control import Control
from shipyard.stores.state.redis import RedisStateStore
from shipyard.telemetry.events import Event, Sink
from tests.stores.state.conftest import REDIS_URL, delete_prefix, redis_store

pytestmark = pytest.mark.redis


class Stopped(ShipyardError):
    code = "stopped"


@pytest.fixture
async def store() -> AsyncIterator[RedisStateStore]:
    state = await redis_store()
    try:
        yield state
    finally:
        await state.close()
        await delete_prefix(REDIS_URL, state._keys.prefix)


async def subscribed_channels(prefix: str) -> list[bytes]:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        return sorted(await client.pubsub_channels(f"{prefix}*"))
    finally:
        await client.aclose()


def run_until(release: asyncio.Event) -> object:
    async def run(sinks: Sequence[Sink]) -> str:
        await release.wait()
        for sink in sinks:  # the run says it ended
            sink(Event.model_construct(type="run.completed"))
        return "done"

    return run


async def test_many_runs_share_one_subscription_and_a_word_reaches_only_its_target(
    store: RedisStateStore,
) -> None:
    control = Control(store)
    release = asyncio.Event()

    async def watched(n: int) -> str:
        async with control.stopper(f"task:{n}", b"cancel") as stopper:
            return await stopper.run(
                run_until(release),  # type: ignore[arg-type]
                stopped=lambda: Stopped("stopped"),
                reason="cancelled",
            )

    runs = [asyncio.create_task(watched(n)) for n in range(20)]
    await asyncio.sleep(0.2)
    channels = await subscribed_channels(store._keys.prefix)
    assert channels == [f"{store._keys.prefix}ch:control".encode()]  # one, not twenty

    other = Control(store)  # another process, say the API's
    await other.send("task:7", b"cancel")
    await other.send("task:8", b"something else")
    done, _ = await asyncio.wait([runs[7]], timeout=5)
    assert runs[7] in done
    with pytest.raises(Stopped):
        runs[7].result()
    release.set()
    results = await asyncio.gather(*(r for n, r in enumerate(runs) if n != 7))
    assert results == ["done"] * 19

    # a word for a run that has ended changes nothing
    await other.send("task:3", b"cancel")
    await asyncio.sleep(0.1)
    await control.close()
    await other.close()


async def test_a_word_heard_before_the_run_starts_means_it_never_starts(
    store: RedisStateStore,
) -> None:
    control, api = Control(store), Control(store)
    ran = False

    async def run(sinks: Sequence[Sink]) -> str:
        nonlocal ran
        ran = True
        return "done"

    async with control.stopper("task:1", b"cancel") as stopper:
        await api.send("task:1", b"cancel")  # while the worker is still claiming, say
        await asyncio.sleep(0.2)
        with pytest.raises(Stopped):
            await stopper.run(run, stopped=lambda: Stopped("stopped"), reason="cancelled")
    assert not ran
    await control.close()
    await api.close()
