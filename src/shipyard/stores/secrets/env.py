"""Secrets from environment variables: the default backend (``env://``).

``secret://github#token`` is the variable ``SECRET_GITHUB__TOKEN``: a prefix (``SECRET_``
unless ``env://?prefix=...`` says otherwise), the path, two underscores, the key; upper case,
every character but letters and digits (``/`` included) as ``_``, so ``db/main#password`` is
``SECRET_DB_MAIN__PASSWORD``. The variables are read when asked, so a value changed in the
process (as a test does) is seen; a secret's keys are the variables that share its name.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

from shipyard.errors import SecretNotFound
from shipyard.stores.secrets.base import (
    WATCH_INTERVAL_S,
    Secret,
    local_version,
    pick_key,
    poll_versions,
)

DEFAULT_PREFIX = "SECRET_"


def _name(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", part).upper()


class EnvSecretStore:
    """Reads ``<PREFIX><PATH>__<KEY>`` from the process environment."""

    def __init__(self, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str) -> EnvSecretStore:
        """``env://`` or ``env://?prefix=MY_SECRETS_``."""
        query = parse_qs(urlsplit(url).query)
        return cls(prefix=query.get("prefix", [DEFAULT_PREFIX])[0])

    def variable(self, path: str, key: str) -> str:
        """The variable that holds ``key`` of the secret at ``path``."""
        return f"{self.prefix}{_name(path)}__{_name(key)}"

    def _items(self, path: str) -> dict[str, str]:
        stem = f"{self.prefix}{_name(path)}__"
        return {
            name[len(stem) :].lower(): value
            for name, value in os.environ.items()
            if name.startswith(stem) and "__" not in name[len(stem) :]
        }

    async def read(self, path: str, key: str, *, version: str | None = None) -> Secret:
        items = self._items(path)
        if not items:
            raise SecretNotFound(f"no secret {path!r} (no variable {self.variable(path, key)})")
        return pick_key(path, _name(key).lower(), items, version)

    async def versions(self, path: str) -> list[str]:
        items = self._items(path)
        if not items:
            raise SecretNotFound(f"no secret {path!r} in the environment")
        return [local_version(items.items())]

    def watch(self, path: str, *, interval_s: float = WATCH_INTERVAL_S) -> AsyncIterator[str]:
        return poll_versions(self, path, interval_s)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
