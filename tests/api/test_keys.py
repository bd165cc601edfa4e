"""``KeyService`` on a real SQLite record store: listing, revoking, bootstrapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from shipyard.api.keys import DEFAULT_TENANT, KeyService
from shipyard.errors import AuthError
from shipyard.stores.records.sql import SqlRecordStore


class CountingStore(SqlRecordStore):
    """The real store, counting ``ensure_tenant`` calls (it still does the work)."""

    ensure_tenant_calls = 0

    async def ensure_tenant(self, tenant_id: str) -> None:
        self.ensure_tenant_calls += 1
        await super().ensure_tenant(tenant_id)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlRecordStore]:
    store = CountingStore.from_url(f"sqlite:///{tmp_path / 'records.db'}")
    try:
        await store.migrate()
        yield store
    finally:
        await store.close()


async def test_list_filters_by_tenant_and_never_shows_secrets(store: SqlRecordStore) -> None:
    keys = KeyService(store)
    secret_a, a = await keys.create("acme", ["invoke"], name="ci")
    _, b = await keys.create("globex", ["read", "invoke"])
    assert [k.id for k in await keys.list()] == [a.id, b.id]
    assert [k.id for k in await keys.list("acme")] == [a.id]
    assert await keys.list("nobody") == []
    assert all(secret_a not in k.model_dump_json() for k in await keys.list())


async def test_revoke_takes_effect_at_once_in_this_process(store: SqlRecordStore) -> None:
    keys = KeyService(store, cache_s=3600)
    secret, record = await keys.create("acme", ["invoke"])
    other_secret, _ = await keys.create("acme", ["read"])
    assert (await keys.verify(secret)).key_id == record.id  # now cached for an hour
    await keys.verify(other_secret)
    assert await keys.revoke(record.id) is True
    with pytest.raises(AuthError):
        await keys.verify(secret)
    assert (await keys.verify(other_secret)).scopes == {"read"}
    [listed] = [k for k in await keys.list("acme") if k.id == record.id]
    assert listed.revoked_at is not None
    assert await keys.revoke(record.id) is True  # still there, still revoked
    assert await keys.revoke("key_nosuch") is False


async def test_another_service_stops_accepting_a_revoked_key_after_its_cache(
    store: SqlRecordStore,
) -> None:
    here, there = KeyService(store, cache_s=0), KeyService(store, cache_s=0)
    secret, record = await here.create("acme", ["invoke"])
    await there.verify(secret)
    await here.revoke(record.id)
    with pytest.raises(AuthError):
        await there.verify(secret)


async def test_create_makes_the_tenant_through_the_key_alone(store: CountingStore) -> None:
    keys = KeyService(store)
    secret, _ = await keys.create("new-tenant", ["invoke"])
    assert store.ensure_tenant_calls == 0
    assert (await keys.verify(secret)).tenant_id == "new-tenant"


async def test_bootstrap_leaves_a_revoked_admin_key_revoked_and_warns(
    store: SqlRecordStore,
) -> None:
    keys = KeyService(store, cache_s=0)
    admin = "sk_shp_operator-chosen-admin-key"
    assert await keys.bootstrap(admin) is None
    [record] = await keys.list(DEFAULT_TENANT)
    assert record.scopes == ("admin",)
    await keys.revoke(record.id)

    with capture_logs() as logs:
        assert await keys.bootstrap(admin) is None
    assert [(e["event"], e["log_level"], e["key_id"]) for e in logs] == [
        ("bootstrap.admin_key_revoked", "warning", record.id)
    ]
    [still] = await keys.list()
    assert still.revoked_at is not None
    with pytest.raises(AuthError):
        await keys.verify(admin)


async def test_bootstrap_generates_a_key_only_into_an_empty_store(store: SqlRecordStore) -> None:
    keys = KeyService(store)
    with capture_logs() as logs:
        secret = await keys.bootstrap(None)
    assert secret is not None and logs == []
    assert (await keys.verify(secret)).scopes == {"admin"}
    [record] = await keys.list()
    await keys.revoke(record.id)
    assert await keys.bootstrap(None) is None  # a revoked key still counts


async def test_only_the_operator_tenants_admin_keys_are_the_operator(store: SqlRecordStore) -> None:
    keys = KeyService(store, operator_tenant="ops")
    generated = await keys.bootstrap(None)  # the first key: the operator's
    assert generated is not None
    first = await keys.verify(generated)
    assert first.tenant_id == "ops" and first.operator
    ops_reader, _ = await keys.create("ops", ["read"])
    tenant_admin, _ = await keys.create(DEFAULT_TENANT, ["admin"])
    assert not (await keys.verify(ops_reader)).operator  # operator means admin, too
    assert not (await keys.verify(tenant_admin)).operator  # 'default' is not special here
