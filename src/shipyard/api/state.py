"""Typed access to what ``create_app`` stores on ``app.state``: the one place routes reach
the runtime's services and the key service (plain functions, no per-request dependency)."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from shipyard.api.keys import KeyService
from shipyard.runtime.services import Services


def services(conn: HTTPConnection) -> Services:
    """The ``Services`` the app serves (a ``Request`` or a ``WebSocket``)."""
    found: Services = conn.app.state.services
    return found


def keys(conn: HTTPConnection) -> KeyService:
    """The ``KeyService`` that checks bearer keys (a ``Request`` or a ``WebSocket``)."""
    found: KeyService = conn.app.state.keys
    return found


def max_body_bytes(conn: HTTPConnection) -> int:
    """The largest request body, and WebSocket message, the app takes
    (``SHIPYARD_MAX_BODY_BYTES``)."""
    found: int = conn.app.state.max_body_bytes
    return found
