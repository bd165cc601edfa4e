"""The keys a server keeps: configured, or generated once into the home folder (readable by
its owner only), so a restart keeps signatures and cookies valid."""

from __future__ import annotations

import secrets

from shipyard.config import Settings


def webhook_signing_key(settings: Settings) -> str:
    """``SHIPYARD_WEBHOOK_SIGNING_KEY``, or the home folder's ``webhook.key``."""
    if settings.webhook_signing_key is not None:
        return settings.webhook_signing_key.get_secret_value()
    return home_key(settings, "webhook.key")


def pseudonym_key(settings: Settings) -> str:
    """``SHIPYARD_PSEUDONYM_KEY`` (a key, keys, or a ``secret://`` reference read at each use),
    or the home folder's ``pseudonym.key``."""
    if settings.pseudonym_key is not None:
        return settings.pseudonym_key.get_secret_value()
    return home_key(settings, "pseudonym.key")


def audit_key(settings: Settings) -> bytes:
    """``SHIPYARD_AUDIT_KEY``, or the home folder's ``audit.key``."""
    if settings.audit_key is not None:
        return settings.audit_key.get_secret_value().encode()
    return home_key(settings, "audit.key").encode()


def ui_session_key(settings: Settings) -> str:
    """``SHIPYARD_UI_SESSION_KEY``, or the home folder's ``ui-session.key``."""
    key = settings.ui_session_key
    return key.get_secret_value() if key else home_key(settings, "ui-session.key")


def home_key(settings: Settings, name: str) -> str:
    """The key in the home folder's file ``name``, made (32 random bytes, hex) the first time."""
    settings.home.mkdir(parents=True, exist_ok=True)
    path = settings.home / name
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()
