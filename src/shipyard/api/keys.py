"""API keys: created once and shown once, stored as a sha256 hash, checked with a short cache."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from shipyard.errors import AuthError, Forbidden, InvalidInput, NotFound
from shipyard.stores.records.base import ApiKeyRecord, KeyRecords, Scope
from shipyard.telemetry.events import new_id

KEY_PREFIX = "sk_shp_"
SCOPES: tuple[Scope, ...] = ("admin", "invoke", "read", "pii:reveal")
EXPLICIT: frozenset[str] = frozenset({"pii:reveal"})
"""Scopes that ``admin`` does not cover: a key must be given them by name (``pii:reveal``
reads the originals behind a run's pseudonyms, docs/guards.md)."""
DEFAULT_TENANT = "default"
_CACHE_MAX = 10_000

log = structlog.get_logger(__name__)


def hash_key(secret: str) -> str:
    """Keys are 256 random bits, so a plain sha256 is enough (no brute force to slow down)."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a tenant and what its key may do.

    ``admin`` covers every scope within the key's tenant but the ``EXPLICIT`` ones.
    ``operator`` is an admin key of the operator's tenant (``SHIPYARD_OPERATOR_TENANT``,
    default ``default``): only it may act across tenants.
    """

    tenant_id: str
    key_id: str
    scopes: frozenset[str]
    operator: bool = False

    def require(self, scope: Scope) -> None:
        if scope not in self.scopes and ("admin" not in self.scopes or scope in EXPLICIT):
            raise Forbidden(f"this key lacks the {scope!r} scope")

    def require_operator(self) -> None:
        if not self.operator:
            raise Forbidden(
                "only the operator's admin keys may do this (it spans tenants); a tenant's "
                "admin key acts within its own tenant"
            )


class KeyRefused(AuthError):
    """401 for a key that exists but is revoked or expired: the audit row names it."""

    def __init__(self, message: str, *, key_id: str) -> None:
        super().__init__(message)
        self.key_id = key_id


def parse_scopes(raw: Iterable[str]) -> tuple[Scope, ...]:
    scopes = [s.strip() for s in raw if s.strip()]
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise InvalidInput(f"scopes must be some of {', '.join(SCOPES)}; got {scopes or 'none'}")
    return tuple(s for s in SCOPES if s in scopes)


class KeyService:
    """Create, verify, list and revoke API keys over a ``KeyRecords`` store.

    Verified keys are trusted for ``cache_s`` seconds. ``revoke`` drops the key from this
    process's cache at once; other processes stop accepting it within ``cache_s``.
    """

    def __init__(
        self, store: KeyRecords, *, cache_s: float = 5.0, operator_tenant: str = DEFAULT_TENANT
    ) -> None:
        """``operator_tenant``: the tenant whose admin keys act across tenants."""
        self._store = store
        self._operator_tenant = operator_tenant
        self._cache_s = cache_s
        # key hash -> (trusted until (monotonic), principal, the key's expiry (epoch) or inf)
        self._cache: dict[str, tuple[float, Principal, float]] = {}
        self._cached_hashes: dict[str, str] = {}  # key id -> key hash, for ``revoke``

    async def create(
        self,
        tenant_id: str,
        scopes: Iterable[str],
        *,
        name: str = "",
        secret: str | None = None,
        expires_in: timedelta | None = None,
        rotated_from: str | None = None,
    ) -> tuple[str, ApiKeyRecord]:
        """Store a new key and return its secret, which is never shown again. ``expires_in``:
        past it the key answers 401."""
        if not tenant_id or not all(c.isalnum() or c in "-_." for c in tenant_id):
            raise InvalidInput("tenant must be letters, digits, '-', '_' or '.'")
        if expires_in is not None and expires_in <= timedelta(0):
            raise InvalidInput("a key's lifetime must be positive")
        secret = secret or KEY_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        record = ApiKeyRecord(
            id=new_id("key"),
            tenant_id=tenant_id,
            key_hash=hash_key(secret),
            prefix=secret[: len(KEY_PREFIX) + 4],
            scopes=parse_scopes(scopes),
            name=name,
            created_at=now,
            expires_at=now + expires_in if expires_in is not None else None,
            rotated_from=rotated_from,
        )
        await self._store.add_api_key(record)  # creates the tenant if needed
        return secret, record

    async def rotate(self, key_id: str, *, grace: timedelta) -> tuple[str, ApiKeyRecord]:
        """A new key with the old one's tenant, scopes, name and lifetime; the old one stays
        valid for ``grace`` (or until it expires, if sooner). Returns the new secret."""
        old = next((k for k in await self._store.list_api_keys() if k.id == key_id), None)
        if old is None:
            raise NotFound(f"no key {key_id!r}")
        if old.revoked_at is not None:
            raise InvalidInput(f"key {key_id!r} is revoked: create a new one instead")
        lifetime = old.expires_at - old.created_at if old.expires_at is not None else None
        made = await self.create(
            old.tenant_id, old.scopes, name=old.name, expires_in=lifetime, rotated_from=old.id
        )
        await self._store.expire_api_key(old.id, datetime.now(UTC) + grace)
        self._forget(old.id)
        return made

    async def bootstrap(self, admin_key: str | None) -> str | None:
        """Make sure an admin key exists. Returns a newly generated secret to print once, if any.

        With ``admin_key`` (``SHIPYARD_ADMIN_KEY``): if no stored key has that secret, it is
        stored as an admin key of the operator's tenant (``SHIPYARD_OPERATOR_TENANT``, default
        ``default``); if one does, it is left exactly as it is. In particular a revoked one
        **stays revoked** — a restart does not bring back a key an
        operator revoked — and a ``bootstrap.admin_key_revoked`` warning is logged, since every
        request made with it will get 401. Nothing is generated in either case; returns None.

        Without ``admin_key``: if the store holds no key at all (revoked ones count), a new admin
        key of the operator's tenant is generated and its secret returned; otherwise returns None.
        """
        if admin_key:
            record = await self._store.find_api_key(hash_key(admin_key))
            if record is None:
                await self.create(
                    self._operator_tenant, ["admin"], name="bootstrap", secret=admin_key
                )
            elif record.revoked_at is not None:
                log.warning(
                    "bootstrap.admin_key_revoked",
                    key_id=record.id,
                    revoked_at=record.revoked_at.isoformat(),
                    hint="SHIPYARD_ADMIN_KEY names a revoked key; requests with it get 401",
                )
            return None
        if await self._store.list_api_keys():
            return None
        secret, _ = await self.create(self._operator_tenant, ["admin"], name="bootstrap")
        return secret

    async def list(self, tenant_id: str | None = None) -> list[ApiKeyRecord]:
        """Keys of one tenant, or of every tenant; revoked ones included, oldest first."""
        return await self._store.list_api_keys(tenant_id)

    async def revoke(self, key_id: str) -> bool:
        """Revoke a key; False if there is no such key.

        This process stops accepting it at once; others within their ``cache_s``.
        """
        revoked = await self._store.revoke_api_key(key_id)
        self._forget(key_id)
        return revoked

    def _forget(self, key_id: str) -> None:
        digest = self._cached_hashes.pop(key_id, None)
        if digest is not None:
            self._cache.pop(digest, None)

    async def verify(self, secret: str) -> Principal:
        return await self.verify_digest(hash_key(secret))

    async def verify_digest(self, digest: str) -> Principal:
        """``verify`` by the key's hash: what the dashboard's session keeps (not the key)."""
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now and cached[2] > time.time():
            return cached[1]
        record = await self._store.find_api_key(digest)
        if record is None:
            self._cache.pop(digest, None)
            raise AuthError("invalid or revoked API key")
        expires = record.expires_at.timestamp() if record.expires_at else float("inf")
        if record.revoked_at is not None or expires <= time.time():
            self._cache.pop(digest, None)
            self._cached_hashes.pop(record.id, None)
            revoked = record.revoked_at is not None
            message = "invalid or revoked API key" if revoked else "this API key has expired"
            raise KeyRefused(message, key_id=record.id)
        scopes = frozenset(record.scopes)
        operator = record.tenant_id == self._operator_tenant and "admin" in scopes
        principal = Principal(record.tenant_id, record.id, scopes, operator)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
            self._cached_hashes.clear()
        self._cache[digest] = (now + self._cache_s, principal, expires)
        self._cached_hashes[record.id] = digest
        return principal
