"""A row an older version stored and that cannot be served (a lone surrogate, NUL, nesting the
JSON serialiser refuses, a shape that no longer validates) is skipped by the listings, and
logged; the other rows are listed as before. The rows are spoiled with SQL, behind the store's
back, as an older version's writes would have left them."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime

import asyncpg
import pytest
from structlog.testing import capture_logs

from shipyard.errors import StoreRejected
from shipyard.stores.records.base import SessionRecord, TaskRecord
from shipyard.stores.records.sql import SqlRecordStore
from tests.stores.records.test_contract import make_event, make_run, run_id

NOW = datetime(2026, 1, 2, tzinfo=UTC)


def _deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


SPOILED = {
    "surrogate": '{"k": "\\ud800"}',
    "nul": '{"k": "a\\u0000b"}',
    "deep": _deep(300),
}


async def _sql(url: str, statement: str, *args: object) -> None:
    """``statement`` with ``$1``-style parameters, straight to the database."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            conn.execute(statement.replace("$1", "?").replace("$2", "?"), args)
            conn.commit()
        finally:
            conn.close()
        return
    pg = await asyncpg.connect(url)
    try:
        cast = re.sub(r"SET (metadata|data) = \$1", r"SET \1 = $1::json", statement)
        await pg.execute(cast, *args)
    finally:
        await pg.close()


@pytest.mark.parametrize("spoil", sorted(SPOILED))
async def test_runs_list_skips_a_spoiled_row(
    store: SqlRecordStore, backend_url: str, spoil: str
) -> None:
    ids = [run_id(n) for n in range(1, 6)]
    await store.write_batch([make_run(i, metadata={"n": n}) for n, i in enumerate(ids)], [])
    await _sql(backend_url, "UPDATE runs SET metadata = $1 WHERE id = $2", SPOILED[spoil], ids[2])
    with capture_logs() as logs:
        page = await store.list_runs("t1", limit=2)
        seen = [r.id for r in page.items]
        while page.next_cursor:
            page = await store.list_runs("t1", limit=2, cursor=page.next_cursor)
            seen += [r.id for r in page.items]
    assert seen == [ids[4], ids[3], ids[1], ids[0]]
    skipped = [e for e in logs if e["event"] == "unreadable record skipped"]
    assert [e["row"] for e in skipped] == [ids[2]]
    assert skipped[0]["log_level"] == "error"


async def test_a_row_that_no_longer_validates_is_skipped(
    store: SqlRecordStore, backend_url: str
) -> None:
    ids = [run_id(n) for n in range(1, 4)]
    await store.write_batch([make_run(i) for i in ids], [])
    await _sql(backend_url, "UPDATE runs SET status = 'paused' WHERE id = $1", ids[1])
    assert [r.id for r in (await store.list_runs("t1")).items] == [ids[2], ids[0]]


@pytest.mark.parametrize("spoil", sorted(SPOILED))
async def test_tasks_sessions_and_events_lists_skip_spoiled_rows(
    store: SqlRecordStore, backend_url: str, spoil: str
) -> None:
    bad = SPOILED[spoil]
    for n in range(2):
        task = TaskRecord(
            id=f"task_{n}", tenant_id="t1", agent="echo", status="queued",
            created_at=NOW, updated_at=NOW,
        )  # fmt: skip
        await store.create_task(task)
        await store.add_session(
            SessionRecord(id=f"sess_{n}", tenant_id="t1", agent="echo", ttl_s=60, created_at=NOW)
        )
    rid = run_id(1)
    await store.write_batch([make_run(rid)], [make_event(rid, seq) for seq in (1, 2, 3)])
    await _sql(backend_url, "UPDATE tasks SET metadata = $1 WHERE id = $2", bad, "task_0")
    await _sql(backend_url, "UPDATE sessions SET metadata = $1 WHERE id = $2", bad, "sess_1")
    await _sql(backend_url, "UPDATE run_events SET data = $1 WHERE seq = $2", bad, 2)
    assert [t.id for t in (await store.list_tasks("t1")).items] == ["task_1"]
    assert [s.id for s in (await store.list_sessions("t1")).items] == ["sess_0"]
    assert [e.seq for e in await store.list_events("t1", rid)] == [1, 3]


async def test_a_refused_value_names_no_driver(store: SqlRecordStore, backend_url: str) -> None:
    """PostgreSQL refuses NUL in text (the API refuses it first); what a client would see says
    what failed, not which driver class."""
    try:
        found = await store.get_run("t1", "run_\x00")
    except StoreRejected as exc:
        assert backend_url.startswith("postgresql")
        assert exc.to_dict() == {
            "code": "store_rejected",
            "message": "a store refused the data",
            "details": {"operation": "get_run"},
        }
    else:
        assert found is None and backend_url.startswith("sqlite")
