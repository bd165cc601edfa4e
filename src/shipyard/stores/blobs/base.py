"""The blob store role (``BlobStore``): artifacts' bytes, streamed in and out.

A blob is written once under a key, with its content type; the store computes its sha256 while
the bytes stream past and keeps it beside the blob, and a full read checks the bytes against it
(``ChecksumMismatch`` at the end of the stream). Ranged reads are served as asked, unchecked.
Presigned URLs are a sub-protocol (``Presigner``), for the backends that have them (S3).

Keys are ``/``-separated paths of safe characters (``check_key``); the tenant and the artifact
id make them up, so no user text ever becomes a path.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from shipyard.errors import ChecksumMismatch, ConfigError, InvalidInput

CHUNK_BYTES = 1 << 20
"""How much a read yields at a time (1 MiB)."""

_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,30}[a-z0-9]")
_KEY = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What the store knows of a blob without reading it."""

    key: str
    size: int
    content_type: str
    sha256: str


class BlobStore(Protocol):
    """Where artifacts' bytes live: a folder, or an S3 bucket."""

    async def put(
        self,
        key: str,
        data: AsyncIterable[bytes],
        *,
        content_type: str,
        sha256: str | None = None,
    ) -> BlobInfo:
        """Stream ``data`` into ``key`` (replacing it). ``sha256``: the digest the caller expects;
        a mismatch raises ``ChecksumMismatch`` and nothing is kept."""
        ...

    def get(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes ``start`` to ``end`` (inclusive; ``None``: to the end), in chunks. A whole
        read is checked against the stored sha256. ``BlobNotFound`` if there is no such blob."""
        ...

    async def head(self, key: str) -> BlobInfo | None: ...

    async def delete(self, key: str) -> bool:
        """Remove the blob; False if there was none."""
        ...

    def list(self, prefix: str) -> AsyncIterator[BlobInfo]:
        """The blobs whose key starts with ``prefix``, in key order."""
        ...

    async def ping(self) -> None:
        """Raise ``StoreError`` unless the store answers (and its bucket exists)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class Presigner(Protocol):
    """A store that can hand out a time-limited URL to read a blob directly."""

    async def presign_get(self, key: str, *, expires_s: int) -> str: ...


@runtime_checkable
class ExpiringBlobs(Protocol):
    """A blob store that deletes objects by age itself (S3 bucket lifecycle rules)."""

    async def set_expiry(self, days: Mapping[str, int]) -> bool:
        """Expire the objects under each key prefix ``days[prefix]`` days after they were
        written, replacing the expiry set before (a prefix not in ``days`` loses its own);
        whether anything changed. False, and nothing set, where the server has no rules."""
        ...


class BlobNotFound(LookupError):
    """No blob under the key (the caller turns it into its own 404)."""


def check_key(key: str) -> str:
    """``key`` if it is a safe relative path (no ``..``, no leading ``/``); else
    ``InvalidInput``."""
    if not _KEY.fullmatch(key) or any(part in {".", ".."} for part in key.split("/")):
        raise InvalidInput(f"invalid blob key {key!r}")
    return key


def check_region(region: str) -> str:
    """``region`` if it is a valid region name (it becomes part of a bucket name or a folder),
    else ``ConfigError``."""
    if not _REGION.fullmatch(region):
        raise ConfigError(f"invalid region {region!r} (2-32 lowercase letters, digits and '-')")
    return region


class Digest:
    """The sha256 of a stream, checked at its end."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def check(self, key: str, expected: str | None) -> None:
        """Raise ``ChecksumMismatch`` unless the digest is ``expected`` (``None``: anything)."""
        actual = self.hexdigest()
        if expected is not None and actual != expected.lower():
            raise ChecksumMismatch(
                f"blob {key!r}: sha256 {actual} is not the expected {expected}",
                details={"operation": "blob checksum"},
            )
