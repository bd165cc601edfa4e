"""``LocalBlobStore``: blobs as files in a folder (the embedded default, under the home folder).

``<root>/data/<key>`` holds the bytes and ``<root>/meta/<key>.json`` the content type, size and
sha256. A put streams into a temporary file and renames it into place, so a reader never sees
half a blob. File calls run in a worker thread, one chunk at a time.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

from shipyard.errors import ConfigError
from shipyard.stores.blobs.base import (
    CHUNK_BYTES,
    BlobInfo,
    BlobNotFound,
    Digest,
    check_key,
    check_region,
)

__all__ = ["LocalBlobStore"]


class LocalBlobStore:
    """The ``BlobStore`` on a local folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._data = root / "data"
        self._meta = root / "meta"
        self._tmp = root / "tmp"

    @classmethod
    def from_url(cls, url: str, *, region: str, endpoint: str | None = None) -> LocalBlobStore:
        """``file:///abs/folder`` or ``file://relative/folder``: one subfolder per region
        (``endpoint``, an S3 notion, must be unset)."""
        parts = urlsplit(url)
        path = unquote(parts.netloc + parts.path)
        if parts.scheme != "file" or not path:
            raise ConfigError(f"blob store URL {url!r}: expected file:///path/to/folder")
        if endpoint is not None:
            raise ConfigError(f"region {region!r}: a file:// blob store has no endpoints")
        return cls(Path(path) / check_region(region))

    def _paths(self, key: str) -> tuple[Path, Path]:
        check_key(key)
        return self._data / key, self._meta / f"{key}.json"

    async def put(
        self,
        key: str,
        data: AsyncIterable[bytes],
        *,
        content_type: str,
        sha256: str | None = None,
    ) -> BlobInfo:
        path, meta = self._paths(key)
        await asyncio.to_thread(self._tmp.mkdir, parents=True, exist_ok=True)
        handle = await asyncio.to_thread(_temp_file, self._tmp)
        digest = Digest()
        try:
            async for chunk in data:
                digest.update(chunk)
                await asyncio.to_thread(handle.write, chunk)
            await asyncio.to_thread(handle.close)
            digest.check(key, sha256)
            info = BlobInfo(key, digest.size, content_type, digest.hexdigest())
            await asyncio.to_thread(_commit, Path(handle.name), path, meta, info)
        finally:
            handle.close()
            await asyncio.to_thread(Path(handle.name).unlink, missing_ok=True)
        return info

    async def get(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        path, _ = self._paths(key)
        info = await self.head(key)
        if info is None:
            raise BlobNotFound(key)
        whole = start == 0 and (end is None or end >= info.size - 1)
        digest = Digest()
        handle = await asyncio.to_thread(path.open, "rb")
        try:
            await asyncio.to_thread(handle.seek, start)
            left = (info.size if end is None else min(end + 1, info.size)) - start
            while left > 0:
                chunk = await asyncio.to_thread(handle.read, min(CHUNK_BYTES, left))
                if not chunk:
                    break
                left -= len(chunk)
                digest.update(chunk)
                if whole and left <= 0:
                    digest.check(key, info.sha256)  # before the last chunk leaves
                yield chunk
            if whole and digest.size != info.size:
                digest.check(key, info.sha256)
        finally:
            handle.close()

    async def head(self, key: str) -> BlobInfo | None:
        _, meta = self._paths(key)
        try:
            text = await asyncio.to_thread(meta.read_text)
        except FileNotFoundError:
            return None
        return BlobInfo(**json.loads(text))

    async def delete(self, key: str) -> bool:
        path, meta = self._paths(key)
        existed = await asyncio.to_thread(meta.exists)
        await asyncio.to_thread(meta.unlink, missing_ok=True)
        await asyncio.to_thread(path.unlink, missing_ok=True)
        return existed

    async def list(self, prefix: str) -> AsyncIterator[BlobInfo]:
        keys = await asyncio.to_thread(_keys, self._meta)
        for key in keys:
            if key.startswith(prefix) and (info := await self.head(key)) is not None:
                yield info

    async def ping(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)

    async def close(self) -> None:
        return None


def _keys(meta: Path) -> list[str]:
    if not meta.exists():
        return []
    found = (p.relative_to(meta).as_posix() for p in meta.rglob("*.json"))
    return sorted(key.removesuffix(".json") for key in found)


def _temp_file(folder: Path) -> IO[bytes]:
    return tempfile.NamedTemporaryFile(dir=folder, delete=False)


def _commit(tmp: Path, path: Path, meta: Path, info: BlobInfo) -> None:
    """Move the bytes into place, then write the metadata that makes the blob visible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, path)
    fields = {
        "key": info.key,
        "size": info.size,
        "content_type": info.content_type,
        "sha256": info.sha256,
    }
    meta_tmp = meta.with_suffix(".json.tmp")
    meta_tmp.write_text(json.dumps(fields))
    os.replace(meta_tmp, meta)
