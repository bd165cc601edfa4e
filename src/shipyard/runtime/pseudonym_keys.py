"""The keys that seal pseudonym mappings at rest: AES-256-GCM, with keys from the secret store.

A mapping (token -> original) is personal data, so the state store never holds it in clear:
``PseudonymKeys.seal`` encrypts it with AES-256-GCM (``cryptography``) under the current key
and writes the key's id beside the ciphertext, and ``open`` finds the key by that id, so a
mapping sealed before a rotation stays readable. The state key (tenant, run or session) is the
associated data: a sealed value copied under another tenant's or run's key does not open.

The key is ``SHIPYARD_PSEUDONYM_KEY``: a ``secret://<path>#<key>`` reference read through the
secret cache at each use (a rotation in the store is used within ``SHIPYARD_SECRETS_CACHE_S``,
without a restart), or a plain value (development; by default one generated into the home
folder). Its value is one key or several separated by spaces or commas, newest first: the first
seals, every one opens. Old keys come from there (any store) and from the older versions of the
secret (Vault and OpenBao keep them). A key's id is a digest of the key, the same in every
process, so replicas agree on it without sharing anything but the key.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shipyard.errors import ConfigError, SecretNotFound
from shipyard.stores.secrets.refs import SecretCache, SecretRef, parse_ref

SCHEME = b"aesgcm1"
"""The first field of a sealed value: the cipher and the layout."""
MIN_KEY_CHARS = 32
"""The shortest key accepted (``openssl rand -hex 32`` gives 64 characters)."""
_INFO = b"shipyard pseudonym mapping"
_NONCE_BYTES = 12
_SPLIT = re.compile(r"[\s,]+")


@dataclass(frozen=True, slots=True)
class SealingKey:
    """One key: its id (written beside what it seals) and its cipher."""

    kid: str
    aead: AESGCM


def derive(material: str) -> SealingKey:
    """The AES-256 key of a configured key (HKDF-SHA256 over its text) and its id."""
    if len(material) < MIN_KEY_CHARS:
        raise ConfigError(
            f"SHIPYARD_PSEUDONYM_KEY: each key needs {MIN_KEY_CHARS} characters or more "
            "(e.g. `openssl rand -hex 32`)"
        )
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO)
    key = hkdf.derive(material.encode())
    kid = hashlib.sha256(b"kid\0" + key).hexdigest()[:16]
    return SealingKey(kid, AESGCM(key))


def keys_of(value: str) -> list[SealingKey]:
    """The keys a setting's value lists, newest first (``ConfigError`` when it lists none)."""
    keys = [derive(part) for part in _SPLIT.split(value.strip()) if part]
    if not keys:
        raise ConfigError("SHIPYARD_PSEUDONYM_KEY is empty")
    return keys


class PseudonymKeys:
    """Seals and opens values with the configured key (``setting``: a plain value, or a
    ``secret://`` reference read through ``secrets``)."""

    __slots__ = ("_known", "_parsed", "_plain", "_ref", "_secrets")

    def __init__(self, setting: str, secrets: SecretCache | None = None) -> None:
        self._ref: SecretRef | None = parse_ref(setting)
        if self._ref is not None and secrets is None:
            raise ConfigError("SHIPYARD_PSEUDONYM_KEY names a secret but there is no store")
        self._plain = None if self._ref is not None else setting
        self._secrets = secrets
        self._known: dict[str, SealingKey] = {}
        self._parsed: tuple[str, list[SealingKey]] | None = None
        if self._plain is not None:
            self._keyring(self._plain)  # a bad plain key fails at start

    async def seal(self, name: str, plain: bytes) -> bytes:
        """``plain`` encrypted under the current key for the state key ``name``."""
        key = (await self._current())[0]
        nonce = os.urandom(_NONCE_BYTES)
        body = base64.urlsafe_b64encode(nonce + key.aead.encrypt(nonce, plain, name.encode()))
        return b":".join((SCHEME, key.kid.encode(), body))

    async def open(self, name: str, sealed: bytes) -> bytes | None:
        """What ``seal`` sealed for ``name``; None when the value is not sealed, was sealed
        for another name, was altered, or its key is no longer known."""
        scheme, _, rest = sealed.partition(b":")
        kid, _, body = rest.partition(b":")
        if scheme != SCHEME:
            return None
        key = await self._find(kid.decode("ascii", "replace"))
        if key is None:
            return None
        try:
            data = base64.urlsafe_b64decode(body)
            return key.aead.decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], name.encode())
        except (ValueError, InvalidTag):
            return None

    async def _current(self) -> list[SealingKey]:
        if self._ref is None or self._secrets is None:
            return self._keyring(str(self._plain))
        return self._keyring(await self._secrets.get(self._ref))

    def _keyring(self, value: str) -> list[SealingKey]:
        """The keys of ``value`` (parsed once per value), remembered by id for ``open``."""
        if self._parsed is None or self._parsed[0] != value:
            keys = keys_of(value)
            self._parsed = (value, keys)
            self._known.update((key.kid, key) for key in keys)
        return self._parsed[1]

    async def _find(self, kid: str) -> SealingKey | None:
        if kid not in self._known:
            await self._current()
        if kid not in self._known:
            await self._read_history()
        return self._known.get(kid)

    async def _read_history(self) -> None:
        """Remember the keys of every older version of the secret the store still has."""
        if self._ref is None or self._secrets is None:
            return
        store, ref = self._secrets.store, self._ref
        try:
            versions = await store.versions(ref.path)
        except SecretNotFound:
            return
        for version in versions:
            try:
                secret = await store.read(ref.path, ref.key, version=version)
                older = keys_of(secret.value.get_secret_value())
            except (SecretNotFound, ConfigError):
                continue  # a deleted version, or one that never was a valid key
            self._known.update((key.kid, key) for key in older)


__all__ = ["MIN_KEY_CHARS", "SCHEME", "PseudonymKeys", "SealingKey", "derive", "keys_of"]
