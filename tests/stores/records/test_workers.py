"""The worker role of the record store contract, on every backend: heartbeats upsert by name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shipyard.stores.records.base import WorkerRecord
from shipyard.stores.records.sql import SqlRecordStore

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def beat(name: str, seen: datetime, **fields: object) -> WorkerRecord:
    values: dict[str, object] = {
        "host": "box",
        "pid": 42,
        "concurrency": 4,
        "running": 1,
        "heartbeat_s": 5.0,
        "started_at": T0,
        "last_seen": seen,
    }
    return WorkerRecord.model_validate({"name": name, **values, **fields})


async def test_heartbeats_upsert_and_list_newest_first(store: SqlRecordStore) -> None:
    await store.heartbeat(beat("a", T0))
    await store.heartbeat(beat("b", T0 + timedelta(seconds=1)))
    await store.heartbeat(beat("a", T0 + timedelta(seconds=2), running=3, succeeded=7))
    listed = await store.list_workers()
    assert [w.name for w in listed] == ["a", "b"]
    assert (listed[0].running, listed[0].succeeded, listed[0].last_seen) == (
        3,
        7,
        T0 + timedelta(seconds=2),
    )
    assert listed[0].started_at == T0


async def test_a_stopped_worker_and_the_since_filter(store: SqlRecordStore) -> None:
    await store.heartbeat(beat("old", T0))
    await store.heartbeat(beat("gone", T0 + timedelta(minutes=5), stopped_at=T0))
    recent = await store.list_workers(since=T0 + timedelta(minutes=1))
    assert [(w.name, w.stopped_at) for w in recent] == [("gone", T0)]


async def test_pruning_deletes_only_the_workers_seen_before_the_cutoff(
    store: SqlRecordStore,
) -> None:
    cutoff = T0 + timedelta(hours=1)
    await store.heartbeat(beat("stopped", T0, stopped_at=T0))
    await store.heartbeat(beat("died", T0 + timedelta(minutes=59)))  # never said it stopped
    await store.heartbeat(beat("at-cutoff", cutoff))
    await store.heartbeat(beat("alive", cutoff + timedelta(seconds=5)))
    await store.heartbeat(beat("stopped-lately", cutoff + timedelta(minutes=1), stopped_at=cutoff))
    assert await store.prune_workers(seen_before=cutoff) == 2
    assert [w.name for w in await store.list_workers()] == [
        "stopped-lately",
        "alive",
        "at-cutoff",
    ]
    assert await store.prune_workers(seen_before=cutoff) == 0
