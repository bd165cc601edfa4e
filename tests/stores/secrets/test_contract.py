"""The secret store contract: the same assertions for every backend (environment, files,
OpenBao with a token and with AppRole)."""

from __future__ import annotations

import asyncio

import pytest

from shipyard.errors import SecretNotFound
from shipyard.stores.secrets.base import Secret
from shipyard.stores.secrets.refs import SecretCache, SecretRef
from tests.stores.secrets.conftest import Backend


async def test_a_secret_is_read_by_path_and_key_with_its_version(backend: Backend) -> None:
    await backend.put("github", {"token": "ghp-first", "user": "bot"})
    secret = await backend.store.read("github", "token")
    assert secret.value.get_secret_value() == "ghp-first"
    assert (await backend.store.read("github", "user")).value.get_secret_value() == "bot"
    assert secret.version == (await backend.store.versions("github"))[-1]
    assert "ghp-first" not in repr(secret) and "ghp-first" not in str(secret)


async def test_a_missing_path_or_key_is_secret_not_found(backend: Backend) -> None:
    await backend.put("present", {"key": "v"})
    with pytest.raises(SecretNotFound):
        await backend.store.read("absent", "key")
    with pytest.raises(SecretNotFound):
        await backend.store.read("present", "other")
    with pytest.raises(SecretNotFound):
        await backend.store.versions("absent")


async def test_a_nested_path_is_a_secret_of_its_own(backend: Backend) -> None:
    await backend.put("db/main", {"password": "pw-main"})
    await backend.put("db/replica", {"password": "pw-replica"})
    assert (await backend.store.read("db/main", "password")).value.get_secret_value() == "pw-main"
    replica = await backend.store.read("db/replica", "password")
    assert replica.value.get_secret_value() == "pw-replica"


async def test_a_rotation_gives_a_new_version_and_value(backend: Backend) -> None:
    await backend.put("api", {"key": "old-value"})
    old = await backend.store.read("api", "key")
    await backend.put("api", {"key": "new-value"})
    new = await backend.store.read("api", "key")
    assert new.value.get_secret_value() == "new-value"
    assert new.version != old.version
    versions = await backend.store.versions("api")
    assert versions[-1] == new.version
    # every version listed can be read; one not listed cannot (only Vault keeps history)
    for version in versions:
        await backend.store.read("api", "key", version=version)
    if old.version in versions:
        kept = await backend.store.read("api", "key", version=old.version)
        assert kept.value.get_secret_value() == "old-value"
    else:
        with pytest.raises(SecretNotFound):
            await backend.store.read("api", "key", version=old.version)
    with pytest.raises(SecretNotFound):
        await backend.store.read("api", "key", version="999999")


async def test_watch_yields_the_current_version_then_each_rotation(backend: Backend) -> None:
    await backend.put("rotating", {"key": "one"})
    first = (await backend.store.versions("rotating"))[-1]
    watcher = backend.store.watch("rotating", interval_s=0.01)
    try:
        async with asyncio.timeout(30):  # a safety net, not a measurement
            assert await anext(watcher) == first
            await backend.put("rotating", {"key": "two"})
            second = await anext(watcher)
    finally:
        await watcher.aclose()  # type: ignore[attr-defined]
    assert second != first
    assert second == (await backend.store.read("rotating", "key")).version


async def test_the_cache_reads_again_after_its_time(backend: Backend) -> None:
    await backend.put("cached", {"key": "before"})
    ref = SecretRef("cached", "key")
    kept = SecretCache(backend.store, cache_s=3600)
    fresh = SecretCache(backend.store, cache_s=0)
    assert await kept.get(ref) == "before"
    assert await fresh.get(ref) == "before"
    await backend.put("cached", {"key": "after"})
    assert await kept.get(ref) == "before"  # within its time: no read
    assert await fresh.get(ref) == "after"
    url = "postgresql://app:{secret://cached#key}@db/shipyard"
    assert await fresh.expand(url) == "postgresql://app:after@db/shipyard"
    assert await fresh.expand("secret://cached#key") == "after"
    assert await fresh.expand("plain") == "plain"


async def test_the_store_answers_a_ping(backend: Backend) -> None:
    await backend.store.ping()


async def test_reads_that_find_a_value_expired_together_share_one(backend: Backend) -> None:
    await backend.put("shared", {"key": "once"})
    reads: list[str] = []
    store = backend.store
    original = store.read

    async def counting(path: str, key: str, *, version: str | None = None) -> Secret:
        reads.append(path)
        return await original(path, key, version=version)

    cache = SecretCache(store, cache_s=3600)
    cache.store.read = counting  # type: ignore[method-assign]
    values = await asyncio.gather(*(cache.get(SecretRef("shared", "key")) for _ in range(20)))
    assert values == ["once"] * 20 and reads == ["shared"]
