"""The secret store: credentials read by path and key, with versions, so a rotation is seen.

A secret lives at a ``path`` (``github``, ``db/main``) and holds one or more ``key``s
(``token``, ``password``); a version is the whole secret at one point in time, as in Vault's
KV v2. Settings and model options name a value as ``secret://<path>#<key>``
(:mod:`shipyard.stores.secrets.refs` resolves them).

Backends: ``env.py`` (environment variables; the default), ``file.py`` (a folder of files, as
Kubernetes and Docker mount secrets) and ``vault.py`` (HashiCorp Vault or OpenBao, KV v2).
Only Vault keeps old versions; the others know the current one only, and name it by a keyed
digest of its content (the key is random per process, so a version says nothing about a value).

Values are :class:`pydantic.SecretStr`: a ``repr``, a log line or an error message that
catches one shows ``**********``.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Protocol

from pydantic import SecretStr

from shipyard.errors import SecretNotFound

WATCH_INTERVAL_S = 5.0
"""How often ``watch`` looks for a new version unless told otherwise."""


@dataclass(frozen=True, slots=True)
class Secret:
    """One key of a secret at one version."""

    value: SecretStr
    version: str


class SecretStore(Protocol):
    """Read-only access to secrets; writing them is the vault's (or the operator's) business."""

    async def read(self, path: str, key: str, *, version: str | None = None) -> Secret:
        """``key`` of the secret at ``path``, at ``version`` (default: the current one).
        Raises ``SecretNotFound`` when there is no such path, key or version, ``StoreError``
        when the store cannot be reached."""
        ...

    async def versions(self, path: str) -> list[str]:
        """The versions of ``path`` that can still be read, oldest first (the last is the
        current one); ``SecretNotFound`` if there is no such secret."""
        ...

    def watch(self, path: str, *, interval_s: float = WATCH_INTERVAL_S) -> AsyncIterator[str]:
        """Yield the current version of ``path`` at once, then each new one as it appears
        (a rotation), looking every ``interval_s``."""
        ...

    async def ping(self) -> None:
        """Raise ``StoreError`` unless the store answers."""
        ...

    async def close(self) -> None: ...


async def poll_versions(store: SecretStore, path: str, interval_s: float) -> AsyncIterator[str]:
    """``watch`` for stores without change notifications: poll the current version."""
    last: str | None = None
    while True:
        current = (await store.versions(path))[-1]
        if current != last:
            last = current
            yield current
        await asyncio.sleep(interval_s)


_DIGEST_KEY = secrets.token_bytes(16)


def local_version(items: Iterable[tuple[str, str]]) -> str:
    """The version of a secret whose backend keeps no history: a digest of its keys and values
    under a key random to this process (equal content, equal version; nothing to brute-force
    outside the process)."""
    digest = hashlib.blake2b(key=_DIGEST_KEY, digest_size=8)
    for key, value in sorted(items):
        digest.update(key.encode() + b"\0" + value.encode() + b"\0")
    return digest.hexdigest()


def pick_key(path: str, key: str, items: dict[str, str], version: str | None) -> Secret:
    """``key`` of a secret without history (``items``), at its only version."""
    current = local_version(items.items())
    if version is not None and version != current:
        raise SecretNotFound(f"secret {path!r} has no version {version!r} (only the current)")
    if key not in items:
        raise SecretNotFound(f"secret {path!r} has no key {key!r}")
    return Secret(SecretStr(items[key]), current)
