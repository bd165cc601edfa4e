"""What only the Redis state store does: URLs, the keyspace, errors, and reconnection.

The restart test runs its own ``redis-server`` on a free port; the shared one is never touched.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shipyard.errors import ConfigError, StoreError
from shipyard.stores.state.redis import RedisStateStore
from tests.conftest import missing_service
from tests.servers import free_port
from tests.stores.state.conftest import REDIS_URL, delete_prefix, redis_store

pytestmark = pytest.mark.redis

LONG = 30.0


class PrivateRedis:
    """A throwaway ``redis-server`` (no persistence) that a test may kill and restart."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        self.proc = subprocess.Popen(
            [self.binary, *args, "no", "--daemonize", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError("redis-server did not answer within 10 s")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        missing_service("redis-server is not installed")
        raise AssertionError("unreachable")
    server = PrivateRedis(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def store() -> AsyncIterator[RedisStateStore]:
    store = await redis_store()
    try:
        yield store
    finally:
        await store.close()
        await delete_prefix(REDIS_URL, store.prefix)


@pytest.mark.parametrize("url", ["sqlite:///x.db", "http://localhost:6379", "redis://h:port/0"])
def test_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        RedisStateStore.from_url(url)


async def test_unreachable_redis_is_a_store_error() -> None:
    store = RedisStateStore.from_url("redis://127.0.0.1:1/0", socket_timeout_s=1)
    try:
        with pytest.raises(StoreError, match=r"127\.0\.0\.1:1/0") as caught:
            await store.ping()
        assert isinstance(caught.value.__cause__, RedisError)
        assert caught.value.details == {"operation": "ping"}
        with pytest.raises(StoreError):
            await store.append("h", b"a", ttl_s=LONG)
        with pytest.raises(StoreError):
            await store.acquire_lease("job", "a", ttl_s=LONG)
        with pytest.raises(StoreError):
            async with store.subscribe("events"):
                pass
    finally:
        await store.close()


async def test_every_key_is_under_the_prefix_and_has_a_ttl(store: RedisStateStore) -> None:
    await store.set("v", b"1", ttl_s=LONG)
    await store.append("l", b"a", ttl_s=LONG)
    await store.compare_and_set("c", None, b"1", ttl_s=LONG)
    await store.append_if("h", [b"a"], guard_key="ver", expected=None, new=b"1", ttl_s=LONG)
    lease = await store.acquire_lease("job", "a", ttl_s=LONG)
    assert lease is not None
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = sorted([k async for k in client.scan_iter(match=f"{store.prefix}*")])
        names = [k.decode().removeprefix(store.prefix) for k in keys]
        assert names == ["k:c", "k:h", "k:l", "k:v", "k:ver", "lease-seq:job", "lease:job"]
        for key in keys:
            assert await client.pttl(key) > 0
    finally:
        await client.aclose()


async def test_bursts_wait_for_a_connection_and_subscriptions_take_none(
    store: RedisStateStore,
) -> None:
    small = RedisStateStore.from_url(REDIS_URL, prefix=store.prefix, max_connections=2)
    try:
        async with small.subscribe("a"), small.subscribe("b"), small.subscribe("c"):
            await asyncio.gather(*(small.set(f"k{i}", b"v", ttl_s=LONG) for i in range(50)))
            values = await asyncio.gather(*(small.get(f"k{i}") for i in range(50)))
            assert values == [b"v"] * 50
    finally:
        await small.close()


async def test_the_same_store_works_again_after_a_restart(private_redis: PrivateRedis) -> None:
    store = RedisStateStore.from_url(private_redis.url, prefix="restart:")
    try:
        await store.set("k", b"v", ttl_s=LONG)
        assert await store.compare_and_set("c", None, b"1", ttl_s=LONG)  # loads the script
        async with store.subscribe("events") as before:
            private_redis.kill()
            with pytest.raises(StoreError):
                await store.get("k")
            with pytest.raises(StoreError):
                await store.append("h", b"a", ttl_s=LONG)
            private_redis.start()  # same port, empty: no persistence

            assert await store.get("k") is None
            await store.set("k", b"again", ttl_s=LONG)
            assert await store.get("k") == b"again"
            assert await store.append("h", b"a", ttl_s=LONG) == 1
            assert await store.compare_and_set("c", None, b"1", ttl_s=LONG)  # NOSCRIPT → reload
            assert await store.acquire_lease("job", "a", ttl_s=LONG) is not None
            await survives(store, before)
        async with store.subscribe("events") as after:
            await store.publish("events", b"after")
            assert await asyncio.wait_for(anext(after), timeout=5) == b"after"
    finally:
        await store.close()


async def survives(store: RedisStateStore, messages: AsyncIterator[bytes]) -> None:
    """A subscription opened before the restart resubscribes by itself (what was published
    while it was away is lost): publish until it hears one."""
    receive = asyncio.ensure_future(anext(messages))
    try:
        deadline = time.monotonic() + 10
        while not receive.done() and time.monotonic() < deadline:
            await store.publish("events", b"hello again")
            await asyncio.wait([receive], timeout=0.1)
        assert await receive == b"hello again"
    finally:
        receive.cancel()
