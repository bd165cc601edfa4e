"""Fixtures for the state store contract: one ``store`` per backend (SQLite file, Redis).

On the shared Redis each test gets a random key prefix, and its keys are deleted afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from shipyard.errors import StoreError
from shipyard.stores.state.base import StateStore
from shipyard.stores.state.redis import RedisStateStore
from shipyard.stores.state.sqlite import SqliteStateStore
from tests.conftest import missing_service

REDIS_URL = os.environ.get("SHIPYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "redis: needs the Redis service")


def as_state_store(store: SqliteStateStore | RedisStateStore) -> StateStore:
    """Both backends satisfy the protocol (checked by mypy on this file)."""
    return store


def fresh_prefix() -> str:
    return f"shipyard-test:{secrets.token_hex(6)}:"


_unreachable: dict[str, str] = {}  # url → why: tried once per session, not once per test


async def redis_store(url: str = REDIS_URL) -> RedisStateStore:
    """A store on the shared Redis under a fresh prefix; skips (or fails) if Redis is down."""
    if url in _unreachable:
        missing_service(_unreachable[url])
    store = RedisStateStore.from_url(url, prefix=fresh_prefix())
    try:
        await store.ping()
    except StoreError as exc:
        await store.close()
        _unreachable[url] = f"Redis unreachable at {url}: {exc}"
        missing_service(_unreachable[url])
    return store


async def delete_prefix(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    if request.param == "sqlite":
        sqlite = SqliteStateStore.from_url(f"sqlite:///{tmp_path}/state.db")
        try:
            yield sqlite
        finally:
            await sqlite.close()
        return
    redis = await redis_store()
    try:
        yield redis
    finally:
        await redis.close()
        await delete_prefix(REDIS_URL, redis.prefix)
