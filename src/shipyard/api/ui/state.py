"""Typed access to what ``create_ui`` keeps on the dashboard app's state beyond ``api.state``'s
services and keys (which the dashboard app carries too)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

if TYPE_CHECKING:
    from shipyard.api.ui.costs import ClosedDays
    from shipyard.api.ui.throttle import SignInThrottle


def audit_key(conn: HTTPConnection) -> bytes | None:
    """The key the audit log's checkpoints are signed with (None: the chains are not checked)."""
    found: bytes | None = conn.app.state.audit_key
    return found


def signin_throttle(conn: HTTPConnection) -> SignInThrottle:
    """The failed sign-ins' throttle (``throttle``)."""
    found: SignInThrottle = conn.app.state.signin_throttle
    return found


def closed_days(conn: HTTPConnection) -> ClosedDays:
    """The costs page's days before today, kept a while (``costs.ClosedDays``)."""
    found: ClosedDays = conn.app.state.closed_days
    return found
