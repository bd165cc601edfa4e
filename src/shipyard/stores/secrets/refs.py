"""``secret://<path>#<key>`` references, and a short-lived cache that resolves them.

A setting or a model option holds a reference instead of a credential: either the whole value
(``SHIPYARD_WEBHOOK_SIGNING_KEY=secret://webhooks#signing``) or a part of it in braces
(``postgresql://app:{secret://db#password}@db/shipyard``). :class:`SecretCache` reads them
from the store and keeps each value ``cache_s`` seconds, so a rotation in the vault is used
within that time without a restart.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

from shipyard.stores.secrets.base import SecretStore

SCHEME = "secret://"
_WHOLE = re.compile(r"secret://([^#\s{}]+)#([^\s{}#]+)")
_EMBEDDED = re.compile(r"\{secret://([^#\s{}]+)#([^\s{}#]+)\}")


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a value is: ``key`` of the secret at ``path``."""

    path: str
    key: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.path}#{self.key}"


def parse_ref(text: str) -> SecretRef | None:
    """The reference ``text`` is (all of it), or None when it is a plain value."""
    found = _WHOLE.fullmatch(text.strip())
    return SecretRef(found[1], found[2]) if found else None


def has_refs(text: str) -> bool:
    """Whether ``text`` is a reference or holds one in braces."""
    return parse_ref(text) is not None or _EMBEDDED.search(text) is not None


def mentions_secret_scheme(text: str) -> bool:
    """Whether ``text`` names a ``secret://`` anywhere (a malformed reference included)."""
    return SCHEME in text


class SecretCache:
    """Resolves references through ``store``, keeping each value ``cache_s`` seconds."""

    def __init__(self, store: SecretStore, *, cache_s: float) -> None:
        self.store = store
        self._cache_s = cache_s
        self._values: dict[SecretRef, tuple[str, float]] = {}
        self._reading: dict[SecretRef, asyncio.Future[str]] = {}
        self._seen: tuple[str, ...] = ()

    async def get(self, ref: SecretRef) -> str:
        """The value ``ref`` names now (``SecretNotFound`` if none). Calls that find it
        expired at once share one read of the store."""
        cached = self._values.get(ref)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        reading = self._reading.get(ref)
        if reading is None:
            reading = asyncio.ensure_future(self._read(ref))
            self._reading[ref] = reading
            reading.add_done_callback(lambda done: self._done(ref, done))
        return await asyncio.shield(reading)

    def _done(self, ref: SecretRef, reading: asyncio.Future[str]) -> None:
        self._reading.pop(ref, None)
        if not reading.cancelled():
            reading.exception()  # retrieved: its waiters (if any are left) raise it

    async def _read(self, ref: SecretRef) -> str:
        now = time.monotonic()
        secret = await self.store.read(ref.path, ref.key)
        value = secret.value.get_secret_value()
        self._values[ref] = (value, now + self._cache_s)
        if value not in self._seen:
            self._seen = (*self._seen, value)
        return value

    def values_read(self) -> tuple[str, ...]:
        """Every value this cache has handed out, rotated ones included (for scrubbing)."""
        return self._seen

    async def expand(self, text: str) -> str:
        """``text`` with its reference (the whole of it, or each one in braces) replaced by the
        value; text without one comes back as it is."""
        whole = parse_ref(text)
        if whole is not None:
            return await self.get(whole)
        parts: list[str] = []
        end = 0
        for found in _EMBEDDED.finditer(text):
            parts += [text[end : found.start()], await self.get(SecretRef(found[1], found[2]))]
            end = found.end()
        return "".join([*parts, text[end:]])
