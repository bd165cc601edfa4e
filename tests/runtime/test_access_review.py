"""The access review on a seeded history: per key its scopes granted against used, last use,
unused and expired keys; refused requests by client and key; admin actions (not reads); egress
denials and guard blocks; nothing from before the period. Also as ``shipyard audit report``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import Result

from shipyard.api.keys import KeyService
from shipyard.runtime.access_review import AccessReview, markdown, review
from shipyard.runtime.audit import AuditLog
from shipyard.stores.records.sql import SqlRecordStore
from shipyard.telemetry.audit import AuditEntry, Outcome
from tests.cli_runner import invoke

NOW = datetime.now(UTC)
DAY = timedelta(days=1)


@pytest.fixture
async def seeded(tmp_path: Path) -> AsyncIterator[tuple[SqlRecordStore, dict[str, str]]]:
    store = SqlRecordStore.from_url(f"sqlite:///{tmp_path / 'shipyard.db'}")
    await store.migrate()
    keys = KeyService(store)
    ids = {}
    for name, tenant, scopes in [
        ("reader", "acme", ["read", "invoke"]),  # uses read only
        ("admin", "acme", ["admin"]),  # never needs admin
        ("ops", "default", ["admin"]),  # changes a policy
        ("idle", "acme", ["read"]),  # never used
        ("old", "acme", ["read"]),  # expired
    ]:
        _, record = await keys.create(tenant, scopes, name=name)
        ids[name] = record.id
    await store.expire_api_key(ids["old"], NOW - DAY)
    audit = AuditLog(store, key=b"k")

    def at(days: float, action: str, outcome: Outcome = "ok", **fields: object) -> None:
        entry = AuditEntry(
            at=NOW - days * DAY, action=action, resource="/x", outcome=outcome, **fields
        )  # type: ignore[arg-type]
        audit.record(entry)

    reader = {"key_id": ids["reader"], "tenant_id": "acme", "client": "10.0.0.1"}
    at(40, "POST /v1/agents/{agent}/invoke", scope="invoke", **reader)  # before the period
    for day in (5, 3, 1):
        at(day, "GET /v1/runs", scope="read", status=200, **reader)
    at(2, "POST /v1/agents/{agent}/invoke", "denied", scope="invoke", status=403, **reader)
    at(1, "GET /v1/runs", "denied", scope="read", status=200, key_id=ids["admin"], tenant_id="acme")
    at(1, "GET /v1/runs", scope="read", status=200, key_id=ids["admin"], tenant_id="acme")
    for _ in range(7):
        at(0.5, "GET /v1/runs", "denied", status=401, client="203.0.113.9")
    at(0.4, "GET /v1/runs/{run_id}", "not_found", status=404, scope="read", **reader)
    ops = {"key_id": ids["ops"], "tenant_id": "default", "scope": "admin"}
    at(0.3, "PUT /v1/tenants/{tenant_id}", status=200, **ops)
    at(0.3, "GET /v1/tenants/{tenant_id}", status=200, **ops)
    at(0.2, "keys.rotate", tenant_id="acme", scope="admin", client="cli:alice@box")
    at(0.1, "egress.denied", "blocked", tenant_id="acme", detail={"rule": "private address"})
    at(0.1, "guard.blocked", "blocked", tenant_id="acme", detail={"guard": "injection"})
    await audit.close()
    await store.touch_api_keys({ids["old"]: NOW - 40 * DAY})
    try:
        yield store, ids
    finally:
        await store.close()


async def test_the_review_of_a_seeded_history(
    seeded: tuple[SqlRecordStore, dict[str, str]],
) -> None:
    store, ids = seeded
    found = await review(store, since=NOW - 30 * DAY, unused_days=30)
    keys = {k.name: k for k in found.keys}
    assert (keys["reader"].used, keys["reader"].unused_scopes) == (["read"], ["invoke"])
    assert keys["reader"].requests == 5 and not keys["reader"].unused  # 40 days ago: not counted
    assert (keys["admin"].used, keys["admin"].unused_scopes) == (["read"], ["admin"])
    assert (keys["ops"].used, keys["ops"].unused_scopes) == (["admin"], [])
    assert not keys["ops"].unused and keys["ops"].last_used_at is not None  # from the rows
    assert keys["idle"].unused and keys["idle"].last_used_at is None
    assert keys["old"].unused and keys["old"].last_used_at is not None  # 40 days ago
    assert keys["old"].expired and not keys["reader"].expired
    refused = {(g.values["client"], g.values["key_id"], g.values["status"]): g.count
               for g in found.refused}  # fmt: skip
    assert refused[("203.0.113.9", None, 401)] == 7
    assert refused[("10.0.0.1", ids["reader"], 403)] == 1
    assert [(g.values["key_id"], g.count) for g in found.not_found] == [(ids["reader"], 1)]
    assert [r.action for r in found.admin_actions] == ["keys.rotate", "PUT /v1/tenants/{tenant_id}"]
    assert [(g.values["action"], g.count) for g in found.egress_denials] == [("egress.denied", 1)]
    assert [(g.values["action"], g.count) for g in found.guard_blocks] == [("guard.blocked", 1)]
    text = markdown(found)
    assert "## Admin actions" in text and "keys.rotate" in text and "unused 30d+" in text
    narrow = await review(store, since=NOW - DAY / 4, tenant_id="acme")
    assert [r.action for r in narrow.admin_actions] == ["keys.rotate"]
    assert {k.name for k in narrow.keys} == {"reader", "admin", "idle", "old"}


async def test_the_report_command(
    seeded: tuple[SqlRecordStore, dict[str, str]], tmp_path: Path
) -> None:
    env = {"SHIPYARD_HOME": str(tmp_path), "SHIPYARD_LOG_LEVEL": "warning"}

    async def run(*args: str) -> Result:  # on a thread: the command runs a loop of its own
        return await asyncio.to_thread(invoke, ["audit", "report", *args], env)

    as_json = await run("--since", "30d", "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    parsed = AccessReview.model_validate(json.loads(as_json.stdout))
    assert {k.name for k in parsed.keys} == {"reader", "admin", "ops", "idle", "old"}
    as_md = await run("--since", "13h")
    assert as_md.exit_code == 0 and "# Access review" in as_md.stdout
    assert "## Refused requests" in as_md.stdout and "203.0.113.9" in as_md.stdout
    bad = await run("--since", "soon")
    assert bad.exit_code == 2 and "e.g. 90d" in bad.output
