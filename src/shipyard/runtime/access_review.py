"""The access review an auditor asks for, from the audit log and the keys (``shipyard audit
report``): per key its last use, the scopes it was granted against those it used, whether it is
unused or past its expiry; refused requests by client and key; admin actions; egress denials
and guard blocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel

from shipyard.stores.records.audit_base import AuditGroup, AuditQuery, AuditRecord, AuditRecords
from shipyard.stores.records.base import ApiKeyRecord

SCOPES = ("admin", "invoke", "read")
MAX_ADMIN_ACTIONS = 1000
_READS = ("GET ", "HEAD ")


class ReviewStore(AuditRecords, Protocol):
    async def list_api_keys(self, tenant_id: str | None = None) -> list[ApiKeyRecord]: ...


class KeyReview(BaseModel):
    id: str
    tenant_id: str
    name: str
    granted: list[str]
    used: list[str]
    unused_scopes: list[str]
    """Granted, and not needed by any request in the period: the key is over-privileged."""
    requests: int
    last_used_at: datetime | None
    unused: bool
    expires_at: datetime | None
    expired: bool
    revoked: bool


class AccessReview(BaseModel):
    since: datetime
    until: datetime
    unused_days: int
    keys: list[KeyReview]
    refused: list[AuditGroup]
    """401 and 403 by client, key and status: bursts of bad keys, missing scopes, probes."""
    not_found: list[AuditGroup]
    """404 by key and client: many from one key are probes of ids (another tenant's look so)."""
    admin_actions: list[AuditRecord]
    egress_denials: list[AuditGroup]
    guard_blocks: list[AuditGroup]


async def review(
    store: ReviewStore,
    *,
    since: datetime,
    unused_days: int = 30,
    tenant_id: str | None = None,
    now: datetime | None = None,
) -> AccessReview:
    now = now or datetime.now(UTC)
    window = AuditQuery(tenant_id=tenant_id, since=since)
    refused_query = AuditQuery(tenant_id=tenant_id, since=since, outcomes=("denied",))
    missing = AuditQuery(tenant_id=tenant_id, since=since, outcomes=("not_found",))
    return AccessReview(
        since=since,
        until=now,
        unused_days=unused_days,
        keys=await _keys(store, window, now - timedelta(days=unused_days), now),
        refused=await store.group_audit(refused_query, ["client", "key_id", "status"]),
        not_found=await store.group_audit(missing, ["key_id", "client"]),
        admin_actions=await _admin_actions(store, tenant_id, since),
        egress_denials=await store.group_audit(
            AuditQuery(tenant_id=tenant_id, since=since, action_prefix="egress."),
            ["tenant_id", "action", "resource"],
        ),
        guard_blocks=await store.group_audit(
            AuditQuery(tenant_id=tenant_id, since=since, action_prefix="guard."),
            ["tenant_id", "action", "resource"],
        ),
    )


async def _keys(
    store: ReviewStore, window: AuditQuery, idle_before: datetime, now: datetime
) -> list[KeyReview]:
    used: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for group in await store.group_audit(window, ["key_id", "scope", "outcome"]):
        key_id, scope = group.values["key_id"], group.values["scope"]
        if key_id is None:
            continue
        counts[key_id] = counts.get(key_id, 0) + group.count
        if scope is not None and group.values["outcome"] != "denied":
            used.setdefault(key_id, set()).add(scope)
    return [
        _key(k, used.get(k.id, set()), counts.get(k.id, 0), idle_before, now)
        for k in await store.list_api_keys(window.tenant_id)
    ]


def _key(
    key: ApiKeyRecord, used: set[str], requests: int, idle_before: datetime, now: datetime
) -> KeyReview:
    granted = list(key.scopes)
    # admin covers the other scopes: an admin key that never needed admin is over-privileged
    unused_scopes = ["admin"] if "admin" in granted else sorted(set(granted))
    unused_scopes = [s for s in unused_scopes if s not in used]
    return KeyReview(
        id=key.id,
        tenant_id=key.tenant_id,
        name=key.name,
        granted=granted,
        used=sorted(used),
        unused_scopes=unused_scopes,
        requests=requests,
        last_used_at=key.last_used_at,
        unused=key.last_used_at is None or key.last_used_at < idle_before,
        expires_at=key.expires_at,
        expired=key.expires_at is not None and key.expires_at <= now,
        revoked=key.revoked_at is not None,
    )


async def _admin_actions(
    store: ReviewStore, tenant_id: str | None, since: datetime
) -> list[AuditRecord]:
    """Changes made with the admin scope (reads left out), newest first."""
    query = AuditQuery(tenant_id=tenant_id, since=since, scope="admin")
    found: list[AuditRecord] = []
    cursor = None
    while len(found) < MAX_ADMIN_ACTIONS:
        page = await store.list_audit(query, limit=500, cursor=cursor)
        found += [r for r in page.items if not r.action.startswith(_READS)]
        cursor = page.next_cursor
        if cursor is None:
            break
    return found[:MAX_ADMIN_ACTIONS]


def markdown(report: AccessReview) -> str:
    """The review as a Markdown document."""
    lines = [
        f"# Access review {report.since:%Y-%m-%d} to {report.until:%Y-%m-%d %H:%M} UTC",
        "",
        "## Keys",
        "",
        "| key | tenant | name | granted | used | over-privileged | requests | last used | state |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for k in report.keys:
        lines.append(
            f"| {k.id} | {k.tenant_id} | {k.name} | {','.join(k.granted)} | "
            f"{','.join(k.used) or '-'} | {','.join(k.unused_scopes) or '-'} | {k.requests} | "
            f"{_when(k.last_used_at)} | {_state(k, report.unused_days)} |"
        )
    lines += _groups("Refused requests (by client, key, status)", report.refused)
    lines += _groups("Not found (by key, client)", report.not_found)
    lines += ["", "## Admin actions", ""]
    lines += [
        f"- {r.at:%Y-%m-%d %H:%M:%S} {r.action} {r.resource} by {r.key_id or r.client} "
        f"({r.outcome})"
        for r in report.admin_actions
    ] or ["none"]
    lines += _groups("Egress denials", report.egress_denials)
    lines += _groups("Guard blocks", report.guard_blocks)
    return "\n".join(lines) + "\n"


def _groups(title: str, groups: list[AuditGroup]) -> list[str]:
    lines = ["", f"## {title}", ""]
    for g in groups:
        values = ", ".join(f"{k}={_plain(v)}" for k, v in g.values.items())
        lines.append(f"- {g.count}: {values} (last {g.last_at:%Y-%m-%d %H:%M:%S})")
    return lines if groups else [*lines, "none"]


def _plain(value: Any) -> str:
    return "-" if value is None else str(value)


def _when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M}" if at else "never"


def _state(key: KeyReview, unused_days: int) -> str:
    states = [
        name
        for name, on in (
            ("revoked", key.revoked),
            ("expired", key.expired),
            (f"unused {unused_days}d+", key.unused and not key.revoked),
        )
        if on
    ]
    return ", ".join(states) or "active"
