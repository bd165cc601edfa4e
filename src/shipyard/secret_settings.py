"""Settings and credentials at start: refuse plain credentials in production, resolve references.

Part of the composition root. :func:`prepare_settings` runs once per process before anything
is built: it finds each credential that is a plain value rather than a ``secret://``
reference (:func:`plain_credentials`) — ``SHIPYARD_ENV=production`` refuses to start naming
each one, development prints one warning line — then replaces every reference in the settings
by its value, read from ``SHIPYARD_SECRETS_URL``'s store. Model options are not resolved here:
the model layer reads them per call (through a cache), so a rotated key is picked up; so does
the pseudonym vault with ``SHIPYARD_PSEUDONYM_KEY``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from pydantic import SecretStr

from shipyard.config import ENV_PREFIX, Settings
from shipyard.errors import ConfigError
from shipyard.models.secret_options import KEY_ENV
from shipyard.stores.secrets.base import SecretStore
from shipyard.stores.secrets.refs import SecretCache, has_refs, mentions_secret_scheme, parse_ref

T = TypeVar("T")

URL_FIELDS = ("database_url", "state_url", "broker_url", "secrets_url")
"""Settings whose URL may hold a password (which should be a ``{secret://...}`` part)."""
CREDENTIAL_FIELDS = ("webhook_signing_key", "admin_key", "pseudonym_key")
"""Settings that are credentials as a whole (which should be ``secret://...``)."""
READ_PER_USE = ("model", "pseudonym_key")
"""Settings whose references stay: their layer reads them at each use, so a rotation is seen."""
CREDENTIAL_ENV = (*KEY_ENV.values(), "ANTHROPIC_AUTH_TOKEN", "VAULT_TOKEN", "VAULT_SECRET_ID")
"""Environment variables that hold a credential when set (a reference is fine)."""


def _text(value: Any) -> str | None:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value if isinstance(value, str) else None


def plain_credentials(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """Each credential given as a plain value, named by its variable (never its value)."""
    found: list[str] = []
    for name in URL_FIELDS:
        url = _text(getattr(settings, name))
        if url and _plain_password(url):
            found.append(f"{ENV_PREFIX}{name.upper()} (a password inside the URL)")
    for name in CREDENTIAL_FIELDS:
        value = _text(getattr(settings, name))
        if value and parse_ref(value) is None:
            found.append(f"{ENV_PREFIX}{name.upper()}")
    if settings.model and _plain_option(settings.model):
        found.append(f"{ENV_PREFIX}MODEL (its api_key option)")
    for name in CREDENTIAL_ENV:
        value = environ.get(name)
        if value and parse_ref(value) is None:
            found.append(f"{name} (in the environment)")
    return found


def _plain_password(url: str) -> bool:
    try:
        password = urlsplit(url).password
    except ValueError:
        return False
    if password is not None and not has_refs(password):
        return True
    query = dict(parse_qsl(urlsplit(url).query))
    return any(query.get(k) and not has_refs(query[k]) for k in ("password", "token"))


def _plain_option(model: str) -> bool:
    options = dict(parse_qsl(model.partition("?")[2]))
    return bool(options.get("api_key")) and parse_ref(options["api_key"]) is None


def check_credentials(settings: Settings, environ: Mapping[str, str] = os.environ) -> None:
    """Production: ``ConfigError`` naming each plain credential; development: one warning line."""
    found = plain_credentials(settings, environ)
    if not found:
        return
    listed = ", ".join(found)
    if settings.env == "production":
        raise ConfigError(
            f"SHIPYARD_ENV=production refuses plain credentials: {listed}; "
            "give each as a secret://<path>#<key> reference (docs/security.md#secrets)"
        )
    print(
        f"warning: plain credentials (use secret:// references in production): {listed}",
        file=sys.stderr,
        flush=True,
    )


async def resolve_settings(settings: Settings, secrets: SecretCache) -> Settings:
    """``settings`` with every reference in a setting (whole, or in braces) read from the
    store; the references in ``READ_PER_USE`` stay (their layer reads them at each use)."""
    updates: dict[str, Any] = {}
    for name in _with_references(settings):
        value = getattr(settings, name)
        text = str(_text(value))
        if not has_refs(text):
            raise ConfigError(f"{ENV_PREFIX}{name.upper()}: a malformed secret:// reference")
        resolved = await secrets.expand(text)
        updates[name] = SecretStr(resolved) if isinstance(value, SecretStr) else resolved
    return settings.model_copy(update=updates) if updates else settings


def _with_references(settings: Settings) -> list[str]:
    """The settings that name a secret (``READ_PER_USE`` aside: they are read at each use)."""
    return [
        name
        for name in type(settings).model_fields
        if name not in READ_PER_USE
        and (text := _text(getattr(settings, name))) is not None
        and mentions_secret_scheme(text)
    ]


def prepare_settings(
    settings: Settings, open_store: Callable[[str], SecretStore], *, check: bool = True
) -> Settings:
    """Check ``settings`` (with ``check``: see :func:`check_credentials`) and resolve their
    references; settings without one come back as they are. Blocking: it runs before the
    process serves anything."""
    if check:
        check_credentials(settings)
    if not _with_references(settings):
        return settings

    async def resolve() -> Settings:
        store = open_store(settings.secrets_url)
        try:
            return await resolve_settings(settings, SecretCache(store, cache_s=0))
        finally:
            await store.close()

    return _run_blocking(resolve)


def _run_blocking(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``coro_fn`` to its end from synchronous code, inside a running loop or not (in a
    thread of its own, so the caller's loop is not re-entered)."""

    async def main() -> T:
        return await coro_fn()

    with ThreadPoolExecutor(1, thread_name_prefix="shipyard-secrets") as pool:
        return pool.submit(asyncio.run, main()).result()
