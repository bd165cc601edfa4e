"""What only the embedded state store does: URLs, files, purging, busy fallback, pub/sub across
the processes sharing its file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shipyard.errors import ConfigError, StoreError
from shipyard.stores.state.sqlite import SqliteStateStore

SHORT, WAIT, LONG = 0.2, 0.35, 30.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStateStore]:
    store = SqliteStateStore.from_url(f"sqlite:///{tmp_path}/state.db")
    try:
        yield store
    finally:
        await store.close()


def rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        count: int = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    conn.close()
    return count


@pytest.mark.parametrize("url", ["redis://localhost", "sqlite://host/x.db", "sqlite:///x.db?a=1"])
def test_rejects_other_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        SqliteStateStore.from_url(url)


def test_an_unusable_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "state.db").mkdir()
    with pytest.raises(StoreError, match="cannot open"):
        SqliteStateStore.from_url(f"sqlite:///{tmp_path}/state.db")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
async def test_in_memory(url: str) -> None:
    store = SqliteStateStore.from_url(url)
    try:
        await store.set("k", b"v", ttl_s=LONG)
        assert await store.get("k") == b"v"
        assert await store.append_if(
            "h", [b"a"], guard_key="v", expected=None, new=b"1", ttl_s=LONG
        )
        assert await store.acquire_lease("job", "a", ttl_s=LONG) is not None
    finally:
        await store.close()


async def test_state_outlives_the_process_until_its_ttl(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nested/state.db"
    first = SqliteStateStore.from_url(url)
    await first.set("k", b"v", ttl_s=LONG)
    lease = await first.acquire_lease("job", "a", ttl_s=SHORT)
    await first.close()
    second = SqliteStateStore.from_url(url)
    try:
        assert await second.get("k") == b"v"
        await asyncio.sleep(WAIT)
        assert lease is not None
        successor = await second.acquire_lease("job", "b", ttl_s=LONG)
        assert successor is not None
        assert successor.token > lease.token
    finally:
        await second.close()


async def test_purge_deletes_expired_rows(store: SqliteStateStore, tmp_path: Path) -> None:
    await store.set("v", b"x", ttl_s=SHORT)
    await store.append("l", b"a", b"b", ttl_s=SHORT)
    await store.set("kept", b"x", ttl_s=LONG)
    await asyncio.sleep(WAIT)
    assert await store.purge() == 2
    assert rows(tmp_path / "state.db", "state_keys") == 1
    assert rows(tmp_path / "state.db", "state_items") == 0


async def test_writes_purge_when_due(tmp_path: Path) -> None:
    store = SqliteStateStore.from_url(f"sqlite:///{tmp_path}/state.db", purge_interval_s=0.01)
    try:
        await store.append("l", b"a", b"b", ttl_s=SHORT)
        await asyncio.sleep(WAIT)
        await store.set("other", b"x", ttl_s=LONG)
        assert rows(tmp_path / "state.db", "state_items") == 0
    finally:
        await store.close()


async def test_a_write_waits_for_another_process_lock_off_the_loop(
    store: SqliteStateStore, tmp_path: Path
) -> None:
    await store.set("k", b"old", ttl_s=LONG)
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.create_task(store.set("k", b"new", ttl_s=LONG))
        read = asyncio.create_task(store.get("k"))
        await asyncio.sleep(0.2)  # the loop runs while the write waits for the lock
        assert not write.done()
        assert not read.done()  # queued behind the write: reads see earlier writes
        other.execute("COMMIT")
        await asyncio.wait_for(write, timeout=5)
        assert await asyncio.wait_for(read, timeout=5) == b"new"
    finally:
        other.close()
    assert await store.get("k") == b"new"  # and back on the loop


async def test_contention_through_the_thread_has_one_winner(
    store: SqliteStateStore, tmp_path: Path
) -> None:
    await store.set("ver", b"1", ttl_s=LONG)
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        turns = [
            asyncio.create_task(
                store.append_if(
                    "h", [b"%d" % i], guard_key="ver", expected=b"1", new=b"2", ttl_s=LONG
                )
            )
            for i in range(20)
        ]
        await asyncio.sleep(0.1)
        other.execute("COMMIT")
        results = await asyncio.wait_for(asyncio.gather(*turns), timeout=10)
    finally:
        other.close()
    assert results.count(True) == 1
    assert await store.range("h") == [b"%d" % results.index(True)]


async def test_pub_sub_reaches_the_other_processes_on_the_file(
    store: SqliteStateStore, tmp_path: Path
) -> None:
    """Another store on the same file (another process: a worker, the server) hears what this
    one publishes while it is subscribed — once each, and nothing from before."""
    other = SqliteStateStore.from_url(f"sqlite:///{tmp_path}/state.db")
    try:
        await store.publish("events", b"before")
        async with other.subscribe("events") as heard, store.subscribe("events") as own:
            assert await store.publish("events", b"m1") == 1  # this process's subscribers
            await store.publish("other-channel", b"x")
            await other.publish("events", b"m2")
            # (a process's own messages reach its subscribers first, the others' at a poll)
            assert {await asyncio.wait_for(anext(heard), LONG) for _ in range(2)} == {b"m1", b"m2"}
            assert {await asyncio.wait_for(anext(own), LONG) for _ in range(2)} == {b"m1", b"m2"}
            await store.publish("events", b"m3")
            assert await asyncio.wait_for(anext(own), LONG) == b"m3"  # not m1 or m2 again
            assert await asyncio.wait_for(anext(heard), LONG) == b"m3"
    finally:
        await other.close()


async def test_published_messages_are_purged(tmp_path: Path) -> None:
    store = SqliteStateStore.from_url(f"sqlite:///{tmp_path}/state.db")
    try:
        await store.publish("events", b"m")
        assert rows(tmp_path / "state.db", "state_messages") == 1
        with sqlite3.connect(tmp_path / "state.db") as conn:
            conn.execute("UPDATE state_messages SET at = at - 3600")
        conn.close()
        await store.purge()
        assert rows(tmp_path / "state.db", "state_messages") == 0
    finally:
        await store.close()


async def test_a_subscriber_that_falls_behind_is_dropped(tmp_path: Path) -> None:
    store = SqliteStateStore.from_url(f"sqlite:///{tmp_path}/state.db", max_queued=3)
    try:
        async with store.subscribe("events") as slow, store.subscribe("events") as fast:
            for i in range(3):
                assert await store.publish("events", b"%d" % i) == 2
                assert await anext(fast) == b"%d" % i
            assert await store.publish("events", b"3") == 1
            with pytest.raises(StoreError, match="fell 3 messages behind"):
                await anext(slow)
            assert await anext(fast) == b"3"
    finally:
        await store.close()


async def test_closing_ends_subscriptions_and_later_calls_fail(store: SqliteStateStore) -> None:
    async with store.subscribe("events") as messages:
        await store.publish("events", b"queued")
        await store.close()
        assert [m async for m in messages] == [b"queued"]
    with pytest.raises(StoreError):
        await store.get("k")
    with pytest.raises(StoreError):
        await store.publish("events", b"m")
    await store.close()  # idempotent
