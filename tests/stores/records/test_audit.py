"""The audit log's records on SQLite and PostgreSQL: rows and checkpoints go in once (a retried
batch changes nothing), list newest first with every filter, count by columns, and read back by
chain; API keys' expiry and last use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shipyard.errors import InvalidInput
from shipyard.stores.records.audit_base import AuditCheckpoint, AuditQuery, AuditRecord
from shipyard.stores.records.base import ApiKeyRecord
from shipyard.stores.records.sql import SqlRecordStore

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)


def row(seq: int, at: datetime, **fields: object) -> AuditRecord:
    millis = int(at.timestamp() * 1000)
    values: dict[str, object] = {
        "id": f"aud_{millis:012x}{seq:016x}",
        "chain_id": "c1",
        "seq": seq,
        "at": at,
        "action": "GET /v1/runs",
        "resource": "/v1/runs",
        "outcome": "ok",
        "hash": f"h{seq}",
    }
    return AuditRecord.model_validate(values | fields)


async def test_rows_list_filter_and_group(store: SqlRecordStore) -> None:
    rows = [
        row(1, T0, tenant_id="acme", key_id="k1", scope="read", status=200),
        row(2, T0 + timedelta(hours=1), tenant_id="acme", key_id="k1", outcome="denied"),
        row(3, T0 + timedelta(hours=2), tenant_id="globex", key_id="k2", action="keys.create"),
        row(4, T0 + timedelta(days=2), client="10.0.0.9", outcome="denied", status=401),
    ]
    checkpoint = AuditCheckpoint(
        chain_id="c1", seq=1, row_seq=4, row_hash="h4", at=T0, final=True, mac="m"
    )
    await store.append_audit([r.model_dump() for r in rows], [checkpoint])
    await store.append_audit([r.model_dump() for r in rows], [checkpoint])  # a retry: no doubles
    listed = await store.list_audit(AuditQuery(), limit=3)
    assert [r.seq for r in listed.items] == [4, 3, 2] and listed.next_cursor is not None
    rest = await store.list_audit(AuditQuery(), cursor=listed.next_cursor)
    assert [r.seq for r in rest.items] == [1] and rest.next_cursor is None
    assert listed.items[2] == rows[1]

    async def seqs(**query: object) -> list[int]:
        page = await store.list_audit(AuditQuery(**query))  # type: ignore[arg-type]
        return sorted(r.seq for r in page.items)

    assert await seqs(tenant_id="acme") == [1, 2]
    assert await seqs(key_id="k2") == [3]
    assert await seqs(action="keys.create") == [3]
    assert await seqs(action_prefix="keys.") == [3]
    assert await seqs(outcomes=("denied",)) == [2, 4]
    assert await seqs(scope="read") == [1]
    assert await seqs(since=T0 + timedelta(hours=1)) == [2, 3, 4]
    assert await seqs(since=T0, until=T0 + timedelta(hours=2)) == [1, 2]
    groups = await store.group_audit(AuditQuery(outcomes=("denied",)), ["key_id", "status"])
    assert [(g.values, g.count) for g in groups] == [
        ({"key_id": None, "status": 401}, 1),
        ({"key_id": "k1", "status": None}, 1),
    ] or [(g.values, g.count) for g in groups] == [
        ({"key_id": "k1", "status": None}, 1),
        ({"key_id": None, "status": 401}, 1),
    ]
    by_tenant = await store.group_audit(AuditQuery(tenant_id="acme"), ["tenant_id"])
    assert by_tenant[0].count == 2 and by_tenant[0].first_at == T0
    assert by_tenant[0].last_at == T0 + timedelta(hours=1)
    with pytest.raises(InvalidInput):
        await store.group_audit(AuditQuery(), ["hash"])
    assert await store.audit_chains() == ["c1"]
    assert [r.seq for r in await store.audit_chain("c1", after_seq=1, limit=2)] == [2, 3]
    assert await store.audit_checkpoints("c1") == [checkpoint]


async def test_keys_expire_sooner_only_and_last_use_moves_forward(store: SqlRecordStore) -> None:
    key = ApiKeyRecord(
        id="key_1", tenant_id="acme", key_hash="h", prefix="sk_shp_abcd", scopes=("read",),
        created_at=T0, expires_at=T0 + timedelta(days=90),
    )  # fmt: skip
    await store.add_api_key(key)
    assert await store.expire_api_key("key_1", T0 + timedelta(days=100))
    assert (await store.find_api_key("h")).expires_at == T0 + timedelta(days=90)  # type: ignore[union-attr]
    assert await store.expire_api_key("key_1", T0 + timedelta(days=1))
    assert (await store.find_api_key("h")).expires_at == T0 + timedelta(days=1)  # type: ignore[union-attr]
    assert not await store.expire_api_key("key_nosuch", T0)
    await store.touch_api_keys({"key_1": T0 + timedelta(hours=5), "key_nosuch": T0})
    await store.touch_api_keys({"key_1": T0 + timedelta(hours=1)})  # older: ignored
    assert (await store.find_api_key("h")).last_used_at == T0 + timedelta(hours=5)  # type: ignore[union-attr]
