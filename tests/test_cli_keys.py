"""``shipyard keys create --expires-in`` and ``keys rotate``: the key's expiry, a rotated key's
grace period, and the audit rows each admin command leaves (a chain per command, signed)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import Result

from shipyard.api.keys import KeyService
from shipyard.errors import AuthError
from shipyard.stores.records.audit_base import AuditQuery, AuditRecord
from shipyard.stores.records.sql import SqlRecordStore
from tests.cli_runner import invoke

SECRET = re.compile(r"sk_shp_[A-Za-z0-9_-]{20,}")


def run(home: Path, *args: str) -> Result:
    env = {"SHIPYARD_HOME": str(home), "SHIPYARD_LOG_LEVEL": "warning"}
    return invoke(args, env)


def key_id(output: str) -> str:
    found = re.search(r"key_[0-9a-f]+", output)
    assert found, output
    return found[0]


async def _check(home: Path, old: str, new: str, old_id: str) -> list[AuditRecord]:
    store = SqlRecordStore.from_url(f"sqlite:///{home / 'shipyard.db'}")
    try:
        keys = KeyService(store, cache_s=0)
        assert (await keys.verify(old)).key_id == old_id  # within its grace period
        renewed = await keys.verify(new)
        assert (renewed.tenant_id, renewed.scopes) == ("acme", frozenset({"read"}))
        await store.expire_api_key(old_id, datetime.now(UTC))  # the grace period is over
        with pytest.raises(AuthError, match="expired"):
            await keys.verify(old)
        await keys.verify(new)
        return (await store.list_audit(AuditQuery(action_prefix="keys."))).items
    finally:
        await store.close()


def test_create_with_expiry_then_rotate_with_a_grace_period(tmp_path: Path) -> None:
    made = run(tmp_path, "keys", "create", "--tenant", "acme", "--scopes", "read",
               "--expires-in", "90d")  # fmt: skip
    assert made.exit_code == 0, made.output
    old, old_id = SECRET.findall(made.stdout)[0], key_id(made.stderr)
    expiry = datetime.now(UTC) + timedelta(days=90)
    assert f"expiring {expiry:%Y-%m-%d}" in made.stderr
    assert f"expires {expiry:%Y-%m-%d}" in run(tmp_path, "keys", "list").stdout

    rotated = run(tmp_path, "keys", "rotate", old_id, "--grace", "1h")
    assert rotated.exit_code == 0, rotated.output
    new = SECRET.findall(rotated.stdout)[0]
    assert new != old and f"rotated {old_id} to key_" in rotated.stderr
    listing = run(tmp_path, "keys", "list").stdout
    soon = datetime.now(UTC) + timedelta(hours=1)
    assert f"expires {soon:%Y-%m-%d}" in listing and f"expires {expiry:%Y-%m-%d}" in listing

    rows = asyncio.run(_check(tmp_path, old, new, old_id))
    assert sorted((r.action, r.resource, r.scope) for r in rows) == [
        ("keys.create", old_id, "admin"),
        ("keys.rotate", old_id, "admin"),
    ]
    assert all(r.client and r.client.startswith("cli:") and r.key_id is None for r in rows)
    verified = run(tmp_path, "audit", "verify")
    assert verified.exit_code == 0, verified.output
    assert "audit log intact" in verified.stdout


def test_rotate_and_create_refuse_bad_input(tmp_path: Path) -> None:
    missing = run(tmp_path, "keys", "rotate", "key_nosuch")
    assert missing.exit_code == 2 and "no key 'key_nosuch'" in missing.output
    bad = run(tmp_path, "keys", "create", "--tenant", "acme", "--expires-in", "0d")
    assert bad.exit_code == 2 and "e.g. 90d" in bad.output
    revoked = run(tmp_path, "keys", "create", "--tenant", "acme")
    gone = key_id(revoked.stderr)
    assert run(tmp_path, "keys", "revoke", gone).exit_code == 0
    again = run(tmp_path, "keys", "rotate", gone)
    assert again.exit_code == 2 and "is revoked" in again.output
