"""Secrets from HashiCorp Vault or OpenBao, KV version 2 (``vault://``), through ``hvac``.

``vault://vault.internal:8200/secret`` (HTTPS) or ``vault+http://127.0.0.1:8200/secret``: the
host, then the KV v2 mount (default ``secret``) and optionally a folder under it that every
path is relative to (``/secret/shipyard``). Query options:

- ``auth=token`` (default): the token from ``token_file=`` (re-read when Vault refuses it, so
  a Vault Agent sink or a mounted file can rotate it), else ``VAULT_TOKEN``;
- ``auth=approle``: ``role_id=`` and the secret id from ``secret_id_file=``, else
  ``VAULT_SECRET_ID``; ``approle_mount=`` (default ``approle``). Logs in again when the token
  expires;
- ``namespace=`` (Vault Enterprise), ``ca=`` (a CA bundle file), ``timeout=`` (seconds, 10).

hvac is synchronous: each call runs in a worker thread (``asyncio.to_thread``), off the loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from pydantic import SecretStr

from shipyard.errors import ConfigError, SecretNotFound, StoreError
from shipyard.stores.secrets.base import WATCH_INTERVAL_S, Secret, poll_versions

try:
    import hvac
    import hvac.exceptions
    import requests
except ImportError as exc:  # pragma: no cover - hvac is a core dependency today
    raise ImportError("the vault:// secret store needs the `hvac` package") from exc

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class VaultAuth:
    """How to log in: a token (from a file or ``VAULT_TOKEN``) or AppRole."""

    method: str = "token"
    token_file: str | None = None
    role_id: str | None = None
    secret_id_file: str | None = None
    approle_mount: str = "approle"

    def token(self) -> str:
        if self.token_file:
            return Path(self.token_file).read_text().strip()
        token = os.environ.get("VAULT_TOKEN")
        if not token:
            raise ConfigError("vault secret store: no token (set token_file= or VAULT_TOKEN)")
        return token

    def secret_id(self) -> str:
        if self.secret_id_file:
            return Path(self.secret_id_file).read_text().strip()
        secret_id = os.environ.get("VAULT_SECRET_ID")
        if not secret_id:
            raise ConfigError("vault approle: no secret id (secret_id_file= or VAULT_SECRET_ID)")
        return secret_id


class VaultSecretStore:
    """KV v2 under one mount (and optionally a folder in it)."""

    def __init__(
        self, client: hvac.Client, auth: VaultAuth, *, mount: str = "secret", base: str = ""
    ) -> None:
        self._client = client
        self._auth = auth
        self.mount = mount
        self.base = base.strip("/")
        self._login_lock = threading.Lock()
        self._logged_in = False

    @classmethod
    def from_url(cls, url: str) -> VaultSecretStore:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        http = "http" if parts.scheme.endswith("+http") else "https"
        mount, _, base = parts.path.strip("/").partition("/")
        auth = VaultAuth(
            method=query.get("auth", "token"),
            token_file=query.get("token_file"),
            role_id=query.get("role_id"),
            secret_id_file=query.get("secret_id_file"),
            approle_mount=query.get("approle_mount", "approle"),
        )
        if auth.method not in ("token", "approle"):
            raise ConfigError(f"vault secret store: auth={auth.method!r}; use token or approle")
        if auth.method == "approle" and not auth.role_id:
            raise ConfigError("vault secret store: auth=approle needs role_id=")
        client = hvac.Client(
            url=f"{http}://{parts.netloc}",
            token="",  # never picked up implicitly: _login sets it
            verify=query.get("ca", True),
            timeout=float(query.get("timeout", 10)),
            namespace=query.get("namespace"),
        )
        return cls(client, auth, mount=mount or "secret", base=base)

    def _path(self, path: str) -> str:
        return f"{self.base}/{path}" if self.base else path

    def _login(self) -> None:
        with self._login_lock:
            if self._auth.method == "approle":
                self._client.auth.approle.login(
                    role_id=self._auth.role_id,
                    secret_id=self._auth.secret_id(),
                    mount_point=self._auth.approle_mount,
                )
            else:
                self._client.token = self._auth.token()
            self._logged_in = True

    def _call(self, fn: Callable[[], T]) -> T:
        """``fn`` logged in; once more after logging in again if Vault refuses the token."""
        if not self._logged_in:
            self._login()
        try:
            return fn()
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
            self._login()
            return fn()

    async def _run(self, what: str, fn: Callable[[], T]) -> T:
        with _translate(what):
            return await asyncio.to_thread(self._call, fn)

    async def read(self, path: str, key: str, *, version: str | None = None) -> Secret:
        number = _version_number(path, version)

        def call() -> Any:
            return self._client.secrets.kv.v2.read_secret_version(
                path=self._path(path),
                version=number,
                mount_point=self.mount,
                raise_on_deleted_version=True,
            )

        data = (await self._run(f"read {path!r}", call))["data"]
        values: dict[str, Any] = data.get("data") or {}
        if key not in values:
            raise SecretNotFound(f"secret {path!r} has no key {key!r}")
        return Secret(SecretStr(str(values[key])), str(data["metadata"]["version"]))

    async def versions(self, path: str) -> list[str]:
        def call() -> Any:
            return self._client.secrets.kv.v2.read_secret_metadata(
                path=self._path(path), mount_point=self.mount
            )

        data = (await self._run(f"list versions of {path!r}", call))["data"]
        live = [
            int(number)
            for number, meta in data["versions"].items()
            if not meta.get("destroyed") and not meta.get("deletion_time")
        ]
        if not live:
            raise SecretNotFound(f"secret {path!r} has no readable version")
        return [str(n) for n in sorted(live)]

    def watch(self, path: str, *, interval_s: float = WATCH_INTERVAL_S) -> AsyncIterator[str]:
        return poll_versions(self, path, interval_s)

    async def ping(self) -> None:
        await self._run("ping", self._client.auth.token.lookup_self)

    async def close(self) -> None:
        await asyncio.to_thread(self._client.adapter.close)


def _version_number(path: str, version: str | None) -> int | None:
    if version is None:
        return None
    if not version.isdigit():
        raise SecretNotFound(f"secret {path!r} has no version {version!r}")
    return int(version)


@contextmanager
def _translate(what: str) -> Iterator[None]:
    """hvac's and requests' exceptions as Shipyard's (the path, never a value)."""
    try:
        yield
    except hvac.exceptions.InvalidPath as exc:
        raise SecretNotFound(f"vault: no secret for {what}") from exc
    except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized) as exc:
        raise StoreError(f"vault refused to {what}: permission denied") from exc
    except hvac.exceptions.VaultError as exc:
        raise StoreError(f"vault failed to {what}: {type(exc).__name__}") from exc
    except requests.RequestException as exc:
        raise StoreError(f"vault unreachable ({what}): {type(exc).__name__}") from exc
    except OSError as exc:  # a token or secret id file that cannot be read
        raise StoreError(f"vault: cannot {what}: {exc.strerror}") from exc
