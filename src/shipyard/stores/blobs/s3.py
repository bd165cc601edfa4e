"""``S3BlobStore``: blobs in one S3 bucket (AWS or any S3-compatible server), via aiobotocore.

One store is one bucket at one endpoint: the composition root makes one per region (see
``regions``), each bucket named in the account's regional namespace,
``<prefix>-<account id>-<region>-an``, and created there (CreateBucket's ``BucketNamespace``)
when missing. A put streams: a blob up to ``PART_BYTES`` is one PutObject, a larger one a
multipart upload, so a 200 MB artifact never sits in memory. The sha256 travels as object
metadata (``x-amz-meta-sha256``). Server-side encryption settings pass through on every write.
Objects expire by the bucket's lifecycle rules where the server has them (``set_expiry``,
``s3_lifecycle``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shipyard.errors import ConfigError, StoreError
from shipyard.stores.blobs.base import BlobInfo, BlobNotFound, Digest, check_key, check_region
from shipyard.stores.blobs.s3_lifecycle import reconcile

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

__all__ = ["PART_BYTES", "S3BlobStore", "S3Options", "bucket_name"]

PART_BYTES = 8 << 20
"""Multipart part size (8 MiB; S3's minimum is 5 MiB)."""


def bucket_name(prefix: str, account_id: str, region: str) -> str:
    """The bucket of one account in one region: ``<prefix>-<account id>-<region>-an``."""
    name = f"{prefix}-{account_id}-{check_region(region)}-an"
    if len(name) > 63 or not re.fullmatch(r"[a-z0-9][a-z0-9-]*[a-z0-9]", name):
        raise ConfigError(f"bucket name {name!r} is not a valid S3 bucket name")
    return name


@dataclass(frozen=True, slots=True, kw_only=True)
class S3Options:
    """How to reach a region's bucket. Credentials: the AWS chain (environment, profile, role)
    unless given. ``sse``: ``AES256`` or ``aws:kms`` (with ``kms_key_id``); ``None``: the
    bucket's default encryption."""

    endpoint: str | None = None
    region: str
    bucket: str
    access_key_id: str | None = None
    secret_access_key: str | None = None
    sse: str | None = None
    kms_key_id: str | None = None
    namespace: str | None = "account-regional"


class S3BlobStore:
    """The ``BlobStore`` (and ``Presigner``) on one S3 bucket."""

    def __init__(self, options: S3Options) -> None:
        self.options = options
        self._stack = AsyncExitStack()
        self._client: S3Client | None = None
        self._bucket_ready = False
        self._no_lifecycle = False

    @classmethod
    def from_url(cls, url: str, *, region: str, endpoint: str | None = None) -> S3BlobStore:
        """See ``_from_url``."""
        return _from_url(url, region=region, endpoint=endpoint)

    async def _s3(self) -> S3Client:
        if self._client is None:
            try:
                from aiobotocore.config import AioConfig
                from aiobotocore.session import get_session
            except ImportError as exc:  # pragma: no cover - a dependency of shipyard
                raise ImportError("the S3 blob store needs aiobotocore") from exc
            o = self.options
            client = get_session().create_client(
                "s3",
                endpoint_url=o.endpoint,
                region_name=o.region,
                aws_access_key_id=o.access_key_id,
                aws_secret_access_key=o.secret_access_key,
                config=AioConfig(
                    connect_timeout=5,
                    read_timeout=60,
                    retries={"max_attempts": 3, "mode": "standard"},
                ),
            )
            self._client = await self._stack.enter_async_context(client)
        return self._client

    async def _ready(self) -> S3Client:
        """The client, once the bucket exists (created in its regional namespace if not)."""
        s3 = await self._s3()
        if not self._bucket_ready:
            with _translate("create bucket"):
                await self._ensure_bucket(s3)
            self._bucket_ready = True
        return s3

    async def _ensure_bucket(self, s3: S3Client) -> None:
        from botocore.exceptions import ClientError

        try:
            await s3.head_bucket(Bucket=self.options.bucket)
            return
        except ClientError as exc:
            if _status(exc) != 404:
                raise
        extra: dict[str, Any] = {}
        if self.options.namespace:
            extra["BucketNamespace"] = self.options.namespace
        if self.options.region != "us-east-1":
            extra["CreateBucketConfiguration"] = {"LocationConstraint": self.options.region}
        try:
            await s3.create_bucket(Bucket=self.options.bucket, **extra)
        except ClientError as exc:
            if _code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise

    def _write_args(self, content_type: str, sha256: str | None) -> dict[str, Any]:
        args: dict[str, Any] = {"Bucket": self.options.bucket, "ContentType": content_type}
        if sha256:
            args["Metadata"] = {"sha256": sha256}
        if self.options.sse:
            args["ServerSideEncryption"] = self.options.sse
        if self.options.kms_key_id:
            args["SSEKMSKeyId"] = self.options.kms_key_id
        return args

    async def put(
        self,
        key: str,
        data: AsyncIterable[bytes],
        *,
        content_type: str,
        sha256: str | None = None,
    ) -> BlobInfo:
        check_key(key)
        s3 = await self._ready()
        digest = Digest()
        parts = _parts(data, digest)
        first = await anext(parts, b"")
        second = await anext(parts, None)
        with _translate("put blob"):
            if second is None:  # one part: the digest is known before the write
                digest.check(key, sha256)
                args = self._write_args(content_type, digest.hexdigest())
                await s3.put_object(Key=key, Body=first, **args)
            else:
                await self._multipart(s3, key, [first, second], parts, content_type, sha256)
                if sha256 is None:  # record the digest now known: a server-side copy
                    await s3.copy_object(
                        Key=key,
                        CopySource={"Bucket": self.options.bucket, "Key": key},
                        MetadataDirective="REPLACE",
                        **self._write_args(content_type, digest.hexdigest()),
                    )
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            await self.delete(key)
            digest.check(key, sha256)
        return BlobInfo(key, digest.size, content_type, digest.hexdigest())

    async def _multipart(
        self,
        s3: S3Client,
        key: str,
        head: list[bytes],
        rest: AsyncIterator[bytes],
        content_type: str,
        sha256: str | None,
    ) -> None:
        args = self._write_args(content_type, sha256)
        upload = await s3.create_multipart_upload(Key=key, **args)
        upload_id, bucket = upload["UploadId"], self.options.bucket
        done: list[CompletedPartTypeDef] = []
        try:
            number = 0
            for body in [*head]:
                number += 1
                part = await s3.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
                )
                done.append({"PartNumber": number, "ETag": part["ETag"]})
            async for body in rest:
                number += 1
                part = await s3.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
                )
                done.append({"PartNumber": number, "ETag": part["ETag"]})
            await s3.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise

    async def get(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        from botocore.exceptions import ClientError

        check_key(key)
        s3 = await self._ready()
        ranged = start > 0 or end is not None
        args: dict[str, Any] = {"Bucket": self.options.bucket, "Key": key}
        if ranged:
            args["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            with _translate("get blob"):
                response = await s3.get_object(**args)
        except StoreError as exc:
            if isinstance(exc.__cause__, ClientError) and _status(exc.__cause__) == 404:
                raise BlobNotFound(key) from exc
            raise
        expected = None if ranged else response.get("Metadata", {}).get("sha256")
        digest = Digest()
        async with response["Body"] as body:
            with _translate("get blob"):
                async for chunk in body.iter_chunks(1 << 20):
                    digest.update(chunk)
                    if digest.size >= response["ContentLength"]:
                        digest.check(key, expected)  # before the last chunk leaves
                    yield chunk
        if digest.size < response["ContentLength"]:
            raise StoreError(f"blob {key!r}: stream ended early", details={"operation": "get"})

    async def head(self, key: str) -> BlobInfo | None:
        from botocore.exceptions import ClientError

        check_key(key)
        s3 = await self._ready()
        try:
            with _translate("head blob"):
                found = await s3.head_object(Bucket=self.options.bucket, Key=key)
        except StoreError as exc:
            if isinstance(exc.__cause__, ClientError) and _status(exc.__cause__) == 404:
                return None
            raise
        return BlobInfo(
            key,
            found["ContentLength"],
            found.get("ContentType", "application/octet-stream"),
            found.get("Metadata", {}).get("sha256", ""),
        )

    async def delete(self, key: str) -> bool:
        existed = await self.head(key) is not None
        s3 = await self._ready()
        with _translate("delete blob"):
            await s3.delete_object(Bucket=self.options.bucket, Key=key)
        return existed

    async def list(self, prefix: str) -> AsyncIterator[BlobInfo]:
        s3 = await self._ready()
        paginator = s3.get_paginator("list_objects_v2")
        with _translate("list blobs"):
            async for page in paginator.paginate(Bucket=self.options.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    info = await self.head(item["Key"])
                    if info is not None:
                        yield info

    async def presign_get(self, key: str, *, expires_s: int) -> str:
        s3 = await self._ready()
        params = {"Bucket": self.options.bucket, "Key": check_key(key)}
        return await s3.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s)

    async def set_expiry(self, days: Mapping[str, int]) -> bool:
        """``ExpiringBlobs``: one lifecycle rule per key prefix (``s3_lifecycle``)."""
        if self._no_lifecycle:
            return False
        s3 = await self._ready()
        with _translate("lifecycle rules"):
            changed = await reconcile(s3, self.options.bucket, days)
        self._no_lifecycle = changed is None
        return bool(changed)

    async def ping(self) -> None:
        await self._ready()

    async def close(self) -> None:
        self._client = None
        self._bucket_ready = False
        await self._stack.aclose()


async def _parts(data: AsyncIterable[bytes], digest: Digest) -> AsyncIterator[bytes]:
    """``data`` regrouped into ``PART_BYTES`` parts (the last one shorter), digested."""
    buffer = bytearray()
    async for chunk in data:
        digest.update(chunk)
        buffer += chunk
        while len(buffer) >= PART_BYTES:
            with memoryview(buffer) as view:
                part = bytes(view[:PART_BYTES])  # one copy, not two
            del buffer[:PART_BYTES]
            yield part
    if buffer:
        yield bytes(buffer)


def _status(exc: Any) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def _translate(operation: str) -> Iterator[None]:
    """botocore and aiohttp errors -> ``StoreError`` (the S3 boundary)."""
    from aiohttp import ClientError as HttpError
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError, HttpError, OSError) as exc:
        raise StoreError(
            f"S3 {operation} failed: {exc!r}", details={"operation": operation}
        ) from exc


def _from_url(url: str, *, region: str, endpoint: str | None = None) -> S3BlobStore:
    """``s3://<prefix>?account=<id>[&region=..][&endpoint=..][&sse=..][&kms_key_id=..]
    [&namespace=..]``: the store of ``region`` (its endpoint from ``SHIPYARD_BLOB_REGIONS``,
    else the URL's ``endpoint``, else AWS's)."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    account = query.get("account", "")
    if parts.scheme != "s3" or not parts.netloc or not account:
        raise ConfigError(f"blob store URL {url!r}: expected s3://<prefix>?account=<account id>")
    return S3BlobStore(
        S3Options(
            endpoint=endpoint or query.get("endpoint"),
            region=region,
            bucket=bucket_name(parts.netloc, account, region),
            sse=query.get("sse"),
            kms_key_id=query.get("kms_key_id"),
            namespace=query.get("namespace", "account-regional") or None,
        )
    )
