"""Secrets from a folder of files, as Kubernetes and Docker mount them (``file:///run/secrets``).

``secret://github#token`` is the file ``<folder>/github/token`` (Kubernetes: one volume per
secret, one file per key). A path that is a file itself (Docker's ``/run/secrets/<name>``) is
a secret with one key, ``value``. One trailing newline is dropped. Files are read when asked,
so a secret that Kubernetes updates in place (it swaps the ``..data`` link) is seen; names
that start with a dot are Kubernetes' bookkeeping and are skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from shipyard.errors import ConfigError, SecretNotFound, StoreError
from shipyard.stores.secrets.base import (
    WATCH_INTERVAL_S,
    Secret,
    local_version,
    pick_key,
    poll_versions,
)

SINGLE_KEY = "value"


class FileSecretStore:
    """Reads ``<folder>/<path>/<key>`` files (or ``<folder>/<path>`` as its ``value``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def from_url(cls, url: str) -> FileSecretStore:
        """``file:///absolute/folder`` (or ``file://./relative`` for a folder here)."""
        parts = urlsplit(url)
        folder = unquote(parts.netloc + parts.path)
        if not folder:
            raise ConfigError("SHIPYARD_SECRETS_URL file:// needs a folder: file:///run/secrets")
        return cls(Path(folder))

    def _where(self, path: str) -> Path:
        segments = path.split("/")
        if any(s in ("", ".", "..") or s.startswith(".") for s in segments):
            raise SecretNotFound(f"secret path {path!r} is not a plain relative path")
        return self.folder.joinpath(*segments)

    def _items(self, path: str) -> dict[str, str]:
        where = self._where(path)
        try:
            if where.is_file():
                return {SINGLE_KEY: _text(where)}
            if where.is_dir():
                return {
                    f.name: _text(f)
                    for f in where.iterdir()
                    if not f.name.startswith(".") and f.is_file()
                }
        except OSError as exc:
            raise StoreError(f"secret files: cannot read {path!r}: {exc.strerror}") from exc
        raise SecretNotFound(f"no secret {path!r} under {self.folder}")

    async def read(self, path: str, key: str, *, version: str | None = None) -> Secret:
        items = await asyncio.to_thread(self._items, path)
        return pick_key(path, key, items, version)

    async def versions(self, path: str) -> list[str]:
        items = await asyncio.to_thread(self._items, path)
        return [local_version(items.items())]

    def watch(self, path: str, *, interval_s: float = WATCH_INTERVAL_S) -> AsyncIterator[str]:
        return poll_versions(self, path, interval_s)

    async def ping(self) -> None:
        if not self.folder.is_dir():
            raise StoreError(f"secret files: {self.folder} is not a folder")

    async def close(self) -> None:
        return None


def _text(file: Path) -> str:
    text = file.read_text()
    return text[:-1] if text.endswith("\n") else text
