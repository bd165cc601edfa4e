"""The SQLite store's vector index (``memories_vec``, sqlite-vec ``vec0``): a store made before
it existed gets it filled on open, and it follows updates and deletes (the triggers)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import apsw
import sqlite_vec  # type: ignore[import-untyped]

from shipyard.stores.memory.base import MemoryItem, MemoryScope, SearchOptions
from shipyard.stores.memory.sqlite import SqliteMemoryStore
from tests.stores.memory.test_contract import EAST, NORTH

VECTOR_ONLY = SearchOptions(hybrid=False)


def memory(n: int) -> MemoryItem:
    now = datetime.now(UTC)
    return MemoryItem(
        id=f"mem_{n}", tenant_id="acme", text=f"fact {n}", created_at=now, updated_at=now
    )


def drop_index(path: Path) -> None:
    """The file as a store from before the index left it."""
    conn = apsw.Connection(str(path))
    conn.enable_load_extension(True)
    conn.load_extension(sqlite_vec.loadable_path())
    for trigger in ("memories_vec_ai", "memories_vec_ad", "memories_vec_au"):
        conn.execute(f"DROP TRIGGER {trigger}")
    conn.execute("DROP TABLE memories_vec")
    conn.close()


async def test_an_older_store_gets_its_index_filled(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    store = SqliteMemoryStore(str(path), embedder="test:4", dimensions=4)
    await store.add_many([(memory(1), NORTH), (memory(2), EAST)])
    await store.close()
    drop_index(path)
    store = SqliteMemoryStore(str(path), embedder="test:4", dimensions=4)
    try:
        hits = await store.search(MemoryScope("acme"), EAST, "", VECTOR_ONLY)
        assert [h.item.id for h in hits] == ["mem_2", "mem_1"]
    finally:
        await store.close()


async def test_the_index_follows_updates_and_deletes(tmp_path: Path) -> None:
    store = SqliteMemoryStore(str(tmp_path / "memory.db"), embedder="test:4", dimensions=4)
    try:
        await store.add_many([(memory(1), NORTH), (memory(2), EAST)])
        await store.update(memory(1), EAST)  # its vector moves onto the query
        assert await store.delete("acme", "mem_2")
        hits = await store.search(MemoryScope("acme"), EAST, "", VECTOR_ONLY)
        assert [(h.item.id, round(h.score, 3)) for h in hits] == [("mem_1", 1.0)]
    finally:
        await store.close()
