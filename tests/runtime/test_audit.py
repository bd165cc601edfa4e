"""``AuditLog``: one chain per writer whose batches verify, a checkpoint with the first rows and
a final one at close, API keys' last use written once per key per interval (not per request),
and with auditing off nothing but that."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shipyard.runtime.audit import AuditLog
from shipyard.runtime.audit_chain import verify
from shipyard.stores.records.audit_base import AuditQuery
from shipyard.stores.records.base import ApiKeyRecord
from shipyard.stores.records.sql import SqlRecordStore
from shipyard.telemetry.audit import AuditEntry

KEY = b"k" * 32


class CountingStore(SqlRecordStore):
    """The real store, counting its audit writes and key touches (it still does them)."""

    appends = 0
    touches: list[dict[str, datetime]]

    async def append_audit(self, rows, checkpoints=()):  # type: ignore[no-untyped-def]
        self.appends += 1
        await super().append_audit(rows, checkpoints)

    async def touch_api_keys(self, used: Mapping[str, datetime]) -> None:
        if used:
            self.touches.append(dict(used))
        await super().touch_api_keys(used)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CountingStore]:
    store = CountingStore.from_url(f"sqlite:///{tmp_path / 'records.db'}")
    store.touches = []
    await store.migrate()
    await store.add_api_key(
        ApiKeyRecord(
            id="key_1", tenant_id="acme", key_hash="h", prefix="sk_shp_x", scopes=("read",),
            created_at=datetime.now(UTC),
        )
    )  # fmt: skip
    try:
        yield store
    finally:
        await store.close()


def request(n: int, key_id: str | None = "key_1", status: int = 200) -> AuditEntry:
    return AuditEntry(
        action="GET /v1/runs", resource=f"/v1/runs/{n}", outcome="ok", key_id=key_id, status=status
    )


async def test_batches_chain_and_verify_with_a_final_checkpoint(store: CountingStore) -> None:
    audit = AuditLog(store, key=KEY, checkpoint_s=3600)
    for batch in range(3):
        for n in range(10):
            audit.record(request(batch * 10 + n))
        await audit.flush()
    assert store.appends == 3  # one write per batch, not one per row
    [checkpoint] = await store.audit_checkpoints(audit.chain_id)  # with the first batch only
    assert (checkpoint.row_seq, checkpoint.final) == (10, False)
    await audit.close()
    checkpoints = await store.audit_checkpoints(audit.chain_id)
    assert [(c.row_seq, c.final) for c in checkpoints] == [(10, False), (30, True)]
    [report] = await verify(store, KEY)
    assert (report.rows, report.signed_seq, report.unsigned, report.problems) == (30, 30, 0, [])
    assert report.final
    [wrong_key] = await verify(store, b"another key")
    assert "another SHIPYARD_AUDIT_KEY" in str(wrong_key.first_problem)
    assert any("signature is wrong" in p.reason for p in wrong_key.problems)


async def test_last_use_is_written_once_per_key_per_interval(store: CountingStore) -> None:
    audit = AuditLog(store, key=KEY, key_used_every_s=3600)
    for n in range(50):
        audit.record(request(n))
        audit.record(request(n, key_id="key_2"))
        if n % 10 == 0:
            await audit.flush()
    audit.record(request(99, key_id="key_3", status=401))  # a refused key was not used
    await audit.flush()
    assert [sorted(t) for t in store.touches] == [["key_1", "key_2"]]
    used = (await store.find_api_key("h")).last_used_at  # type: ignore[union-attr]
    assert used is not None and used > datetime.now(UTC) - timedelta(minutes=1)
    await audit.close()  # the newest use is written at close
    assert [sorted(t) for t in store.touches] == [["key_1", "key_2"], ["key_1", "key_2"]]


async def test_with_auditing_off_only_last_use_is_kept(store: CountingStore) -> None:
    audit = AuditLog(store, key=KEY, enabled=False)
    audit.record(request(1))
    await audit.close()
    assert (await store.list_audit(AuditQuery())).items == []
    assert await store.audit_chains() == []
    assert (await store.find_api_key("h")).last_used_at is not None  # type: ignore[union-attr]


async def test_the_writer_task_writes_without_being_asked(store: CountingStore) -> None:
    audit = AuditLog(store, key=KEY, flush_s=0)
    await audit.start()
    try:
        audit.record(request(1))
        for _ in range(200):
            if (await store.list_audit(AuditQuery())).items:
                break
            await asyncio.sleep(0.01)
        assert len((await store.list_audit(AuditQuery())).items) == 1
    finally:
        await audit.close()
