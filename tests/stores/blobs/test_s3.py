"""What only S3 has: presigned URLs, server-side encryption, regional buckets, and streaming a
200 MB object without holding it in memory."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest

from shipyard.errors import RegionDenied, StoreError
from shipyard.stores.blobs.base import Presigner
from shipyard.stores.blobs.regions import RegionalBlobs
from shipyard.stores.blobs.s3 import S3BlobStore, bucket_name
from tests.stores.blobs.conftest import s3_store
from tests.stores.blobs.test_contract import chunks, read

pytestmark = pytest.mark.s3


def test_bucket_names_follow_the_account_regional_namespace() -> None:
    assert bucket_name("shipyard", "123456789012", "eu-west-1") == (
        "shipyard-123456789012-eu-west-1-an"
    )
    store = S3BlobStore.from_url(
        "s3://shipyard?account=123456789012&sse=aws:kms&kms_key_id=k1", region="us-b"
    )
    assert store.options.bucket == "shipyard-123456789012-us-b-an"
    assert (store.options.sse, store.options.kms_key_id) == ("aws:kms", "k1")


async def test_presigned_url_reads_the_blob() -> None:
    store = await s3_store("eu-a")
    try:
        await store.put("t1/p", chunks(b"signed"), content_type="text/plain")
        assert isinstance(store, Presigner)
        url = await store.presign_get("t1/p", expires_s=60)
        assert store.options.bucket in url
        async with httpx.AsyncClient() as client:
            answer = await client.get(url)
            forged = await client.get(url.replace("Signature=", "Signature=AA"))
            anonymous = await client.get(url.split("?", 1)[0])
        assert answer.status_code == 200
        assert answer.content == b"signed"
        assert (forged.status_code, anonymous.status_code) == (403, 403)
    finally:
        await store.close()


async def test_wrong_credentials_are_a_store_error() -> None:
    good = await s3_store("eu-a")
    await good.close()
    options = replace(good.options, access_key_id="wrong", secret_access_key="wrong")
    store = S3BlobStore(options)
    try:
        with pytest.raises(StoreError) as caught:
            await store.put("t1/x", chunks(b"x"), content_type="text/plain")
        assert "403" in caught.value.message
        assert caught.value.to_dict()["message"] == StoreError.public  # no driver detail out
    finally:
        await store.close()


async def test_server_side_encryption_is_passed_through() -> None:
    store = await s3_store("eu-a", sse="AES256")
    try:
        await store.put("t1/e", chunks(b"secret"), content_type="text/plain")
        s3 = await store._s3()
        found = await s3.head_object(Bucket=store.options.bucket, Key="t1/e")
        assert found.get("ServerSideEncryption") == "AES256"
    finally:
        await store.close()


async def test_each_region_has_its_bucket_and_crossing_is_refused() -> None:
    eu, us = await s3_store("eu-a", "shared"), await s3_store("us-b", "shared")
    blobs = RegionalBlobs({"eu-a": eu, "us-b": us}, default_region="eu-a")
    try:
        assert eu.options.bucket != us.options.bucket
        home = blobs.home("eu-a")
        store = blobs.store("eu-a", home=home, tenant_id="t1", action="write")
        await store.put("t1/r", chunks(b"eu data"), content_type="text/plain")
        assert await us.head("t1/r") is None  # the other region's server never saw it
        with pytest.raises(RegionDenied):
            blobs.store("us-b", home=home, tenant_id="t1", action="write")
        with pytest.raises(RegionDenied):
            blobs.store("eu-a", home=blobs.home("us-b"), tenant_id="t1", action="read")
        assert await read(store, "t1/r") == b"eu data"
    finally:
        await blobs.close()


async def test_200_mb_streams_through_without_being_held() -> None:
    store = await s3_store("eu-a")
    block = hashlib.sha256(b"seed").digest() * (1 << 15)  # 1 MiB
    total = 200

    async def produce() -> AsyncIterator[bytes]:
        for _ in range(total):
            yield block

    tracemalloc.start()
    try:
        info = await store.put("t1/huge", produce(), content_type="application/octet-stream")
        size = 0
        async for chunk in store.get("t1/huge"):
            size += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await store.delete("t1/huge")
        await store.close()
    assert (info.size, size) == (total * len(block), total * len(block))
    assert peak < 64 << 20, f"peak {peak >> 20} MiB for a {total} MiB object"
