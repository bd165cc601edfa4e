"""Typed access to what ``create_ui`` keeps on the dashboard app's state beyond ``api.state``'s
services and keys (which the dashboard app carries too)."""

from __future__ import annotations

from starlette.requests import HTTPConnection


def audit_key(conn: HTTPConnection) -> bytes | None:
    """The key the audit log's checkpoints are signed with (None: the chains are not checked)."""
    found: bytes | None = conn.app.state.audit_key
    return found
