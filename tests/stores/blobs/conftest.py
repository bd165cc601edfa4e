"""Fixtures for the blob store contract: the local folder, and S3 on a real SeaweedFS.

``scripts/services.sh`` starts two SeaweedFS servers (``weed mini``) standing for two regions:
S3 on 127.0.0.1:18333 (region ``eu-a``) and 127.0.0.1:18334 (region ``us-b``), each accepting
the one key pair it was started with (``S3_KEYS``) and refusing any other.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from shipyard.errors import StoreError
from shipyard.stores.blobs.base import BlobStore
from shipyard.stores.blobs.local import LocalBlobStore
from shipyard.stores.blobs.s3 import S3BlobStore, S3Options, bucket_name
from tests.conftest import missing_service

S3_ENDPOINTS = {
    "eu-a": os.environ.get("SHIPYARD_TEST_S3_A", "http://127.0.0.1:18333"),
    "us-b": os.environ.get("SHIPYARD_TEST_S3_B", "http://127.0.0.1:18334"),
}
S3_KEYS = {
    "access_key_id": os.environ.get("SHIPYARD_TEST_S3_KEY_ID", "shipyard-test"),
    "secret_access_key": os.environ.get("SHIPYARD_TEST_S3_SECRET", "shipyard-test-secret"),
}

Corrupt = Callable[[str], Awaitable[None]]


@dataclass
class Backend:
    store: BlobStore
    corrupt: Corrupt
    """Change a stored blob's bytes behind the store's back (same size, same metadata)."""


async def s3_store(region: str, prefix: str = "", *, sse: str | None = None) -> S3BlobStore:
    """A store on a fresh bucket of the test account in ``region``; skips (fails under
    SHIPYARD_REQUIRE_SERVICES=1) when the region's SeaweedFS is not running."""
    prefix = prefix or f"t{secrets.token_hex(4)}"
    store = S3BlobStore(
        S3Options(
            endpoint=S3_ENDPOINTS[region],
            region=region,
            bucket=bucket_name(prefix, "123456789012", region),
            sse=sse,
            **S3_KEYS,
        )
    )
    try:
        await store.ping()
    except StoreError as exc:
        await store.close()
        missing_service(f"S3 (SeaweedFS) unreachable at {S3_ENDPOINTS[region]}: {exc.message}")
    return store


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "local":
        local = LocalBlobStore(tmp_path / "blobs")

        async def corrupt_file(key: str) -> None:
            path = local.root / "data" / key
            data = bytearray(path.read_bytes())
            data[0] ^= 0xFF
            path.write_bytes(bytes(data))

        yield Backend(local, corrupt_file)
        return
    store = await s3_store("eu-a", sse="AES256")

    async def corrupt_object(key: str) -> None:
        s3 = await store._s3()
        found = await s3.get_object(Bucket=store.options.bucket, Key=key)
        data = bytearray(await found["Body"].read())
        data[0] ^= 0xFF
        await s3.put_object(
            Bucket=store.options.bucket,
            Key=key,
            Body=bytes(data),
            ContentType=found["ContentType"],
            Metadata=found["Metadata"],
        )

    try:
        yield Backend(store, corrupt_object)
    finally:
        await store.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "s3: needs the S3 (SeaweedFS) service")
