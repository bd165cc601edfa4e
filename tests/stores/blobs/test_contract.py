"""The ``BlobStore`` contract, run on the local folder and on S3 (SeaweedFS)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from shipyard.errors import ChecksumMismatch, InvalidInput
from shipyard.stores.blobs.base import BlobNotFound, BlobStore
from tests.stores.blobs.conftest import Backend


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read(store: BlobStore, key: str, **span: int) -> bytes:
    return b"".join([chunk async for chunk in store.get(key, **span)])


async def test_put_get_head_round_trip(backend: Backend) -> None:
    store = backend.store
    info = await store.put("t1/a", chunks(b"hello ", b"world"), content_type="text/plain")
    assert info.size == 11
    assert info.sha256 == hashlib.sha256(b"hello world").hexdigest()
    assert await read(store, "t1/a") == b"hello world"
    head = await store.head("t1/a")
    assert head is not None
    assert (head.size, head.content_type, head.sha256) == (11, "text/plain", info.sha256)


async def test_ranges(backend: Backend) -> None:
    await backend.store.put("t1/r", chunks(b"0123456789"), content_type="text/plain")
    assert await read(backend.store, "t1/r", start=2, end=4) == b"234"
    assert await read(backend.store, "t1/r", start=7) == b"789"


async def test_expected_sha256_mismatch_keeps_nothing(backend: Backend) -> None:
    with pytest.raises(ChecksumMismatch):
        await backend.store.put(
            "t1/bad", chunks(b"data"), content_type="text/plain", sha256="0" * 64
        )
    assert await backend.store.head("t1/bad") is None
    good = hashlib.sha256(b"data").hexdigest()
    info = await backend.store.put("t1/ok", chunks(b"data"), content_type="x/y", sha256=good)
    assert info.sha256 == good


async def test_changed_bytes_fail_the_checksum_on_read(backend: Backend) -> None:
    await backend.store.put("t1/c", chunks(b"precious bytes"), content_type="text/plain")
    await backend.corrupt("t1/c")
    with pytest.raises(ChecksumMismatch):
        await read(backend.store, "t1/c")


async def test_missing_delete_and_list(backend: Backend) -> None:
    store = backend.store
    assert await store.head("t1/none") is None
    with pytest.raises(BlobNotFound):
        await read(store, "t1/none")
    for key in ("t1/x/1", "t1/x/2", "t2/x/1"):
        await store.put(key, chunks(key.encode()), content_type="text/plain")
    assert [info.key async for info in store.list("t1/x/")] == ["t1/x/1", "t1/x/2"]
    assert await store.delete("t1/x/1") is True
    assert await store.delete("t1/x/1") is False
    assert [info.key async for info in store.list("t1/")] == ["t1/x/2"]


async def test_unsafe_keys_are_refused(backend: Backend) -> None:
    for key in ("../etc/passwd", "/abs", "a//b", "a/../b", "sp ace"):
        with pytest.raises(InvalidInput):
            await backend.store.put(key, chunks(b"x"), content_type="text/plain")


async def test_a_multipart_sized_blob_round_trips(backend: Backend) -> None:
    part = bytes(range(256)) * 4096  # 1 MiB
    total = 20
    info = await backend.store.put(
        "t1/big", chunks(*[part] * total), content_type="application/octet-stream"
    )
    expected = hashlib.sha256(part * total).hexdigest()
    assert (info.size, info.sha256) == (total * len(part), expected)
    digest, size = hashlib.sha256(), 0
    async for chunk in backend.store.get("t1/big"):
        digest.update(chunk)
        size += len(chunk)
    assert (size, digest.hexdigest()) == (info.size, expected)
    head = await backend.store.head("t1/big")
    assert head is not None and head.sha256 == expected
