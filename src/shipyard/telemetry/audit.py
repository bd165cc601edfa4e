"""What an audit row says, and the one call that records it (``AuditSink.record``).

Everything that must leave a trace for an auditor — a request (the API's middleware), an admin
action from the command line, an egress denial, a guard's block — hands an ``AuditEntry`` to the
process's sink. ``record`` never blocks and never fails the caller: the sink buffers, chains and
writes in batches (``runtime.audit.AuditLog``).

An entry holds who, what, where and how it ended — never a secret or a body. ``detail`` is for a
few short facts (the egress rule that denied a call); it is hashed and stored as given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, Protocol

Outcome = Literal["ok", "denied", "not_found", "rejected", "error", "blocked"]
"""``ok``: served (2xx, 3xx); ``denied``: no, a bad, expired or revoked key (401) or a missing
scope or another tenant (403); ``not_found``: 404 (another tenant's id looks the same);
``rejected``: any other 4xx; ``error``: 5xx; ``blocked``: an egress policy or a guard refused."""

ADMIN_SCOPE = "admin"


def outcome_of(status: int) -> Outcome:
    if status < 400:
        return "ok"
    if status in (401, 403):
        return "denied"
    if status == 404:
        return "not_found"
    return "rejected" if status < 500 else "error"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited act. ``action``: ``"GET /v1/runs/{run_id}"`` (a request: method and route),
    ``"keys.create"`` (an admin command), ``"egress.denied"``...; ``resource``: what it was
    done to (the request's path, a key's id, a URL without its query). ``scope``: the scope the
    act needed (``admin`` for admin actions)."""

    action: str
    resource: str
    outcome: Outcome
    at: datetime = field(default_factory=_now)
    tenant_id: str | None = None
    key_id: str | None = None
    status: int | None = None
    scope: str | None = None
    client: str | None = None
    request_id: str | None = None
    trace_id: str | None = None
    detail: Mapping[str, Any] | None = None


class RequestAudit(NamedTuple):
    """An API request's row as the middleware captures it when the answer starts: a tuple of
    what the scope says, made in a fraction of an ``AuditEntry``'s time. The writer turns it
    into the row (the outcome, the trace id, the time as a ``datetime``) in its batch.
    ``at``: ``time.time()``; ``traceparent``: the raw header, if any."""

    at: float
    method: str
    route: str | None
    """The route's template (``/v1/runs/{run_id}``); None when no route matched."""
    path: str
    raw_path: bytes | None
    status: int
    tenant_id: str | None
    key_id: str | None
    scope: str | None
    client: str | None
    request_id: str | None
    traceparent: bytes | None

    @property
    def action(self) -> str:
        return f"{self.method} {self.route or self.path}"

    @property
    def resource(self) -> str:
        """The raw path (never the query string: it may carry a browser's key)."""
        return self.raw_path.decode("latin-1") if self.raw_path else self.path


class AuditSink(Protocol):
    def record(self, entry: AuditEntry | RequestAudit) -> None:
        """Take an entry; never blocks, never raises."""
        ...


class NoAudit:
    """The sink when nothing is audited (``SHIPYARD_AUDIT=false``)."""

    def record(self, entry: AuditEntry | RequestAudit) -> None:
        return None
