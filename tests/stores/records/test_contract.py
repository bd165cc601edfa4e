"""The record store contract: the same assertions on every backend (see conftest ``store``)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from shipyard.errors import ConfigError, StoreError
from shipyard.stores.records.base import (
    ApiKeyRecord,
    RecordStore,
    RunRecord,
    SessionRecord,
    TaskRecord,
)
from shipyard.stores.records.sql import SqlRecordStore
from shipyard.telemetry.events import Event

T0 = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def run_id(n: int) -> str:
    """Time-ordered like ``new_id``: a larger ``n`` is a newer run."""
    return f"run_{n:012x}{secrets.token_hex(8)}"


def make_run(rid: str, tenant: str = "t1", **fields: Any) -> RunRecord:
    values: dict[str, Any] = {"agent": "echo", "status": "running", "created_at": T0}
    return RunRecord(id=rid, tenant_id=tenant, **(values | fields))


def make_event(rid: str, seq: int, tenant: str = "t1", **fields: Any) -> Event:
    values: dict[str, Any] = {
        "type": "tool.call",
        "ts": 1_735_000_000.25 + seq,
        "agent": "echo",
        "trace_id": "trace1",
        "span_id": f"span{seq}",
        "data": {"seq": seq},
    }
    return Event(run_id=rid, seq=seq, tenant_id=tenant, **(values | fields))


def make_key(tenant: str, name: str, *, created_at: datetime = T0) -> ApiKeyRecord:
    secret = secrets.token_hex(16)
    return ApiKeyRecord(
        id=f"key_{secrets.token_hex(6)}",
        tenant_id=tenant,
        key_hash=hashlib.sha256(secret.encode()).hexdigest(),
        prefix=secret[:8],
        scopes=("invoke", "read"),
        name=name,
        created_at=created_at,
    )


# -- lifecycle ------------------------------------------------------------------------------------


async def test_migrate_is_idempotent_and_keeps_data(store: SqlRecordStore) -> None:
    run = make_run(run_id(1))
    await store.write_batch([run], [])
    await store.migrate()
    await store.migrate()
    assert await store.is_current()
    assert await store.get_run("t1", run.id) == run


async def test_fresh_database_is_not_current_until_migrated(tmp_path: Path) -> None:
    store = SqlRecordStore.from_url(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        assert not await store.is_current()
        await store.migrate()
        assert await store.is_current()
    finally:
        await store.close()


async def test_ping(store: SqlRecordStore) -> None:
    await store.ping()


@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
async def test_unreachable_store_raises_store_error(kind: str, tmp_path: Path) -> None:
    # A file that is not a database fails on the first statement, as a lost server does.
    # (Not a folder: aiosqlite 0.22 leaks its worker thread when the connection itself fails.)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    url = "postgresql://postgres@127.0.0.1:1/x" if kind == "postgres" else f"sqlite:///{garbage}"
    store = SqlRecordStore.from_url(url)
    try:
        with pytest.raises(StoreError) as info:
            await store.ping()
        assert info.value.__cause__ is not None
    finally:
        await store.close()


# -- URLs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["mysql://root@localhost/x", "redis://localhost", "not a url"])
def test_from_url_rejects_unsupported_schemes(url: str) -> None:
    with pytest.raises(ConfigError):
        SqlRecordStore.from_url(url)


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+asyncpg"])
async def test_from_url_accepts_postgres_spellings(scheme: str) -> None:
    store = SqlRecordStore.from_url(f"{scheme}://u@db.example:5433/app")
    try:
        assert store._engine.url.drivername == "postgresql+asyncpg"
        assert (store._engine.url.host, store._engine.url.port) == ("db.example", 5433)
    finally:
        await store.close()


async def test_from_url_sqlite_relative_path_creates_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = SqlRecordStore.from_url("sqlite:///a/b/records.db")
    try:
        await store.migrate()
        assert (tmp_path / "a" / "b" / "records.db").is_file()
    finally:
        await store.close()


# -- tenants and keys -----------------------------------------------------------------------------


async def test_ensure_tenant_is_idempotent(store: SqlRecordStore) -> None:
    await store.ensure_tenant("t1")
    await store.ensure_tenant("t1")
    key = make_key("t1", "after")
    await store.add_api_key(key)
    assert await store.list_api_keys("t1") == [key]


async def test_api_keys_add_find_list(store: SqlRecordStore) -> None:
    k1 = make_key("t1", "first", created_at=T0)
    k2 = make_key("t1", "second", created_at=T0 + timedelta(seconds=1))
    k3 = make_key("t2", "other")
    for key in (k2, k1, k3):
        await store.add_api_key(key)

    assert await store.find_api_key(k2.key_hash) == k2
    assert await store.find_api_key("0" * 64) is None
    assert await store.list_api_keys("t1") == [k1, k2]
    assert await store.list_api_keys("t2") == [k3]
    assert await store.list_api_keys("nobody") == []
    assert sorted(k.id for k in await store.list_api_keys()) == sorted([k1.id, k2.id, k3.id])


async def test_duplicate_key_hash_is_a_store_error(store: SqlRecordStore) -> None:
    key = make_key("t1", "one")
    await store.add_api_key(key)
    with pytest.raises(StoreError):
        await store.add_api_key(key.model_copy(update={"id": "key_other"}))


async def test_revoke_api_key(store: SqlRecordStore) -> None:
    key, other = make_key("t1", "doomed"), make_key("t1", "kept")
    await store.add_api_key(key)
    await store.add_api_key(other)
    before = datetime.now(UTC)

    assert await store.revoke_api_key(key.id) is True
    found = await store.find_api_key(key.key_hash)
    assert found is not None and found.revoked_at is not None
    assert found.revoked_at.tzinfo is not None
    assert before - timedelta(seconds=5) <= found.revoked_at <= datetime.now(UTC)
    assert found.model_copy(update={"revoked_at": None}) == key

    assert await store.revoke_api_key(key.id) is True  # again: still revoked, same time
    again = await store.find_api_key(key.key_hash)
    assert again is not None and again.revoked_at == found.revoked_at
    assert await store.revoke_api_key("key_unknown") is False
    assert await store.find_api_key(other.key_hash) == other


# -- runs and events ------------------------------------------------------------------------------


async def test_write_batch_upserts_runs(store: SqlRecordStore) -> None:
    rid = run_id(1)
    await store.write_batch([make_run(rid, input={"text": "hi"})], [])
    final = make_run(
        rid,
        input={"text": "hi"},
        status="succeeded",
        output="hello",
        metadata={"user": "u1"},
        prompt_tokens=12,
        completion_tokens=34,
        cost_usd=0.0125,
        session_id="ses_1",
        task_id="task_1",
        trace_id="trace1",
        ended_at=T0 + timedelta(seconds=2),
    )
    await store.write_batch([final], [])
    assert await store.get_run("t1", rid) == final


async def test_write_batch_keeps_created_at_and_last_write_in_batch_wins(
    store: SqlRecordStore,
) -> None:
    rid = run_id(1)
    await store.write_batch([make_run(rid)], [])
    failed = make_run(
        rid,
        status="failed",
        error={"code": "model_error", "message": "boom"},
        created_at=T0 + timedelta(hours=1),
    )
    await store.write_batch([make_run(rid, status="running"), failed], [])
    stored = await store.get_run("t1", rid)
    assert stored is not None
    assert stored.status == "failed" and stored.error == failed.error
    assert stored.created_at == T0


async def test_events_roundtrip_in_seq_order(store: SqlRecordStore) -> None:
    rid = run_id(1)
    data: dict[str, Any] = {
        "text": 'héllo ✓ "quoted" \n',
        "nested": {"list": [1, 2.5, None, True, {"k": "v"}], "empty": {}},
        "big": 2**53,
    }
    events = [make_event(rid, seq, data=data | {"seq": seq}) for seq in (3, 1, 5, 2, 4)]
    events.append(make_event(rid, 6, type="run.completed", session_id="s", task_id="t"))
    await store.write_batch([make_run(rid)], events)

    stored = await store.list_events("t1", rid)
    assert stored == sorted(events, key=lambda e: e.seq)
    assert [e.seq for e in await store.list_events("t1", rid, after_seq=2, limit=2)] == [3, 4]
    assert await store.list_events("t1", rid, after_seq=6) == []
    assert await store.list_events("t1", "run_missing") == []


async def test_retried_batch_is_idempotent(store: SqlRecordStore) -> None:
    rid = run_id(1)
    run = make_run(rid)
    first = [make_event(rid, seq) for seq in (1, 2, 3)]
    await store.write_batch([run], first)
    await store.write_batch([run], first)
    overlapping = [make_event(rid, seq, data={"retry": True}) for seq in (2, 3, 4)]
    await store.write_batch([run], overlapping)

    stored = await store.list_events("t1", rid)
    assert [e.seq for e in stored] == [1, 2, 3, 4]
    assert [e.data for e in stored] == [{"seq": 1}, {"seq": 2}, {"seq": 3}, {"retry": True}]


async def test_write_batch_skips_ephemeral_deltas(store: SqlRecordStore) -> None:
    rid = run_id(1)
    events = [make_event(rid, 1), make_event(rid, 2, type="llm.delta", data={"text": "x"})]
    await store.write_batch([], events)
    await store.write_batch([], [])
    assert [e.seq for e in await store.list_events("t1", rid)] == [1]


async def test_tenant_isolation(store: SqlRecordStore) -> None:
    rid = run_id(1)
    run = make_run(rid, tenant="t1", output="secret")
    await store.write_batch([run], [make_event(rid, 1, tenant="t1")])

    assert await store.get_run("t2", rid) is None
    assert (await store.list_runs("t2")).items == []
    assert await store.list_events("t2", rid) == []

    # Another tenant writing the same run id does not take the run over.
    await store.write_batch([make_run(rid, tenant="t2", output="stolen")], [])
    assert await store.get_run("t1", rid) == run
    assert await store.get_run("t2", rid) is None


async def test_list_runs_newest_first_with_filters(store: SqlRecordStore) -> None:
    statuses = ["running", "succeeded", "failed"]
    runs = [
        make_run(run_id(n), agent="a" if n % 2 else "b", status=statuses[n % 3]) for n in range(9)
    ]
    await store.write_batch(runs[::-1], [])
    await store.write_batch([make_run(run_id(100), tenant="t2")], [])
    newest_first = runs[::-1]

    assert (await store.list_runs("t1")).items == newest_first
    by_agent = (await store.list_runs("t1", agent="a")).items
    assert by_agent == [r for r in newest_first if r.agent == "a"]
    by_status = (await store.list_runs("t1", status="failed")).items
    assert by_status == [r for r in newest_first if r.status == "failed"]
    both = (await store.list_runs("t1", agent="b", status="running")).items
    assert both == [r for r in newest_first if r.agent == "b" and r.status == "running"]
    assert len(both) == 2
    assert (await store.list_runs("t1", agent="nobody")).items == []


async def test_list_runs_by_task_kind_and_time(store: SqlRecordStore) -> None:
    """The dashboard's filters: a task's runs, a run's children, how runs were started, a window
    of time (read from the time-ordered ids: ``n`` is the run's creation in ms)."""
    invoke, turn, attempt, retry = (run_id(n) for n in (1_000, 2_000, 3_000, 4_000))
    await store.write_batch(
        [
            make_run(invoke),
            make_run(turn, session_id="s1"),
            make_run(attempt, task_id="task1"),
            make_run(retry, task_id="task1", parent_run_id=invoke),
            make_run(run_id(5_000), tenant="t2", task_id="task1"),
        ],
        [],
    )

    def ids(page: Any) -> list[str]:
        return [r.id for r in page.items]

    assert ids(await store.list_runs("t1", task_id="task1")) == [retry, attempt]
    assert ids(await store.list_runs("t1", parent_run_id=invoke)) == [retry]
    assert ids(await store.list_runs("t2", parent_run_id=invoke)) == []
    assert ids(await store.list_runs("t1", kind="task")) == [retry, attempt]
    assert ids(await store.list_runs("t1", kind="session")) == [turn]
    assert ids(await store.list_runs("t1", kind="invoke")) == [invoke]
    at = lambda ms: datetime.fromtimestamp(ms / 1000, UTC)  # noqa: E731
    window = await store.list_runs("t1", since=at(2_000), until=at(4_000))
    assert ids(window) == [attempt, turn]
    assert ids(await store.list_runs("t1", since=at(4_001))) == []
    first = await store.list_runs("t1", since=at(1_000), limit=2)
    rest = await store.list_runs("t1", since=at(1_000), limit=2, cursor=first.next_cursor)
    assert ids(first) + ids(rest) == [retry, attempt, turn, invoke]


async def test_list_runs_searches_input_and_output_text(store: SqlRecordStore) -> None:
    """The dashboard's search: a substring of the input (text or messages, as stored) or the
    output, any case, the tenant's own runs only; ``%`` and ``_`` are literal."""
    messages = [{"role": "user", "content": "Where is my Parcel?"}]
    asked, answered, chat, literal, plain = (run_id(n) for n in (1, 2, 3, 4, 5))
    await store.write_batch(
        [
            make_run(asked, input="refund for order 42"),
            make_run(answered, input="hi", output="Your REFUND is on its way"),
            make_run(chat, input=messages),
            make_run(literal, input="100% sure_thing"),
            make_run(plain, input="nothing here", output="none"),
            make_run(run_id(6), tenant="t2", input="refund me too"),
        ],
        [],
    )

    async def found(text: str, **filters: Any) -> list[str]:
        return [r.id for r in (await store.list_runs("t1", text=text, **filters)).items]

    assert await found("refund") == [answered, asked]
    assert await found("parcel") == [chat]
    assert await found("0% s") == [literal]
    assert await found("%") == [literal] and await found("_") == [literal]
    since = datetime.fromtimestamp(0.002, UTC)  # from run 2 on: the window bounds the scan
    assert await found("refund", status="running", since=since) == [answered]
    first = await store.list_runs("t1", text="refund", limit=1)
    rest = await store.list_runs("t1", text="refund", limit=1, cursor=first.next_cursor)
    assert [r.id for r in first.items + rest.items] == [answered, asked]
    assert await found("absent") == []


async def test_run_summaries_of_a_window_newest_first(store: SqlRecordStore) -> None:
    """The overview's lean rows: a window of the tenant's runs, newest first, capped."""
    ended = T0 + timedelta(seconds=2)
    await store.write_batch(
        [
            make_run(run_id(1_000), agent="a", status="succeeded", cost_usd=0.5, ended_at=ended),
            make_run(run_id(2_000), agent="b", status="failed", prompt_tokens=7),
            make_run(run_id(3_000), agent="c", completion_tokens=3),
            make_run(run_id(4_000), tenant="t2"),
        ],
        [],
    )
    at = lambda ms: datetime.fromtimestamp(ms / 1000, UTC)  # noqa: E731
    found = await store.run_summaries("t1", since=at(2_000), limit=10)
    assert [(s.agent, s.status, s.prompt_tokens, s.completion_tokens) for s in found] == [
        ("c", "running", 0, 3),
        ("b", "failed", 7, 0),
    ]
    every = await store.run_summaries("t1", since=at(0), limit=10)
    assert [s.agent for s in every] == ["c", "b", "a"]
    assert every[2].cost_usd == 0.5 and every[2].ended_at == ended and every[2].created_at == T0
    assert [s.agent for s in await store.run_summaries("t1", since=at(0), limit=2)] == ["c", "b"]


async def test_list_runs_pages_each_run_exactly_once(store: SqlRecordStore) -> None:
    runs = [make_run(run_id(n)) for n in range(10)]
    await store.write_batch(runs, [])

    seen: list[str] = []
    page = await store.list_runs("t1", limit=3)
    sizes = [len(page.items)]
    seen += [r.id for r in page.items]
    # A run created between pages shows up on no later page (keyset, not offset).
    await store.write_batch([make_run(run_id(50))], [])
    while page.next_cursor is not None:
        page = await store.list_runs("t1", limit=3, cursor=page.next_cursor)
        sizes.append(len(page.items))
        seen += [r.id for r in page.items]

    assert sizes == [3, 3, 3, 1]
    assert seen == [r.id for r in runs[::-1]]


async def test_list_runs_clamps_limit(store: SqlRecordStore) -> None:
    await store.write_batch([make_run(run_id(n)) for n in range(502)], [])
    one = await store.list_runs("t1", limit=0)
    assert len(one.items) == 1 and one.next_cursor == one.items[0].id
    page = await store.list_runs("t1", limit=10_000)
    assert len(page.items) == 500 and page.next_cursor is not None
    rest = await store.list_runs("t1", limit=10_000, cursor=page.next_cursor)
    assert len(rest.items) == 2 and rest.next_cursor is None


async def test_datetimes_come_back_timezone_aware(store: SqlRecordStore) -> None:
    plus2 = timezone(timedelta(hours=2))
    created = datetime(2025, 6, 1, 12, 0, 0, 654321, tzinfo=plus2)
    naive_end = datetime(2025, 6, 1, 10, 0, 5)  # naive values are taken as UTC
    rid = run_id(1)
    await store.write_batch([make_run(rid, created_at=created, ended_at=naive_end)], [])
    key = make_key("t1", "tz", created_at=created)
    await store.add_api_key(key)

    run = await store.get_run("t1", rid)
    assert run is not None and run.ended_at is not None
    assert run.created_at == created and run.created_at.utcoffset() == timedelta(0)
    assert run.ended_at == naive_end.replace(tzinfo=UTC)
    assert run.ended_at.tzinfo is not None
    found = await store.find_api_key(key.key_hash)
    assert found is not None
    assert found.created_at == created and found.created_at.tzinfo is not None


# -- sessions -------------------------------------------------------------------------------------


def make_session(n: int, tenant: str = "t1", agent: str = "echo") -> SessionRecord:
    return SessionRecord(
        id=f"ses_{n:012x}{secrets.token_hex(8)}",
        tenant_id=tenant,
        agent=agent,
        metadata={"n": n},
        ttl_s=60.0,
        created_at=T0,
    )


async def test_sessions_add_get_delete(store: SqlRecordStore) -> None:
    session = make_session(1)
    await store.add_session(session)
    assert await store.get_session("t1", session.id) == session
    assert await store.get_session("t2", session.id) is None  # another tenant's

    assert await store.delete_session("t1", session.id) is True
    deleted = await store.get_session("t1", session.id)
    assert deleted is not None and deleted.deleted_at is not None
    assert await store.delete_session("t1", session.id) is True  # keeps the first time
    again = await store.get_session("t1", session.id)
    assert again is not None and again.deleted_at == deleted.deleted_at
    assert await store.delete_session("t2", session.id) is False


async def test_list_sessions_pages_newest_first_without_deleted(store: SqlRecordStore) -> None:
    made = [make_session(n, agent="a" if n % 2 else "b") for n in range(1, 8)]
    for session in made:
        await store.add_session(session)
    await store.add_session(make_session(99, tenant="t2"))
    await store.delete_session("t1", made[0].id)

    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_sessions("t1", limit=2, cursor=cursor)
        seen.extend(s.id for s in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [s.id for s in reversed(made[1:])]
    only_a = await store.list_sessions("t1", agent="a")
    assert [s.id for s in only_a.items] == [made[6].id, made[4].id, made[2].id]


async def test_list_runs_by_session(store: SqlRecordStore) -> None:
    a, b, c = run_id(1), run_id(2), run_id(3)
    await store.write_batch(
        [make_run(a, session_id="s1"), make_run(b, session_id="s2"), make_run(c, session_id="s1")],
        [],
    )
    page = await store.list_runs("t1", session_id="s1")
    assert [r.id for r in page.items] == [c, a]


# -- tasks ----------------------------------------------------------------------------------------


def make_task(n: int, tenant: str = "t1", key: str | None = None, **fields: Any) -> TaskRecord:
    values: dict[str, Any] = {
        "agent": "echo",
        "status": "queued",
        "input": {"text": f"task {n}"},
        "created_at": T0,
        "updated_at": T0,
        "idempotency_key": key,
    }
    return TaskRecord(
        id=f"task_{n:012x}{secrets.token_hex(8)}", tenant_id=tenant, **(values | fields)
    )


def test_the_sql_store_is_a_record_store() -> None:
    store: RecordStore = SqlRecordStore.from_url("sqlite://")  # checked by mypy
    assert store is not None


async def test_tasks_are_idempotent_per_tenant(store: SqlRecordStore) -> None:
    first, created = await store.create_task(make_task(1, key="k1"))
    again, created_again = await store.create_task(make_task(2, key="k1"))
    other, created_other = await store.create_task(make_task(3, tenant="t2", key="k1"))
    assert created and not created_again and created_other
    assert again.id == first.id and other.id != first.id
    no_key_a, _ = await store.create_task(make_task(4))
    no_key_b, created_b = await store.create_task(make_task(5))
    assert created_b and no_key_a.id != no_key_b.id


async def test_pending_handovers_until_handed_over(store: SqlRecordStore) -> None:
    pending = [
        (await store.create_task(make_task(n, handover_pending=True)))[0] for n in range(1, 5)
    ]
    await store.create_task(make_task(5))  # handed over already: never pending
    await store.transition_task(  # cancelled while pending: its outcome still has to go out
        "t1", pending[3].id, "cancelled", expected=frozenset({"queued"})
    )
    ids = [t.id for t in pending]
    assert [t.id for t in await store.pending_handovers()] == ids
    assert [t.id for t in await store.pending_handovers(limit=2)] == ids[:2]
    assert [t.id for t in await store.pending_handovers(after_id=ids[1])] == ids[2:]
    await store.handed_over([ids[0], ids[2], "task_unknown"])
    await store.handed_over([])
    assert [t.id for t in await store.pending_handovers()] == [ids[1], ids[3]]
    first = await store.get_task("t1", ids[0])
    assert first is not None and not first.handover_pending


async def test_a_claim_can_clear_the_hand_over(store: SqlRecordStore) -> None:
    task, _ = await store.create_task(make_task(1, handover_pending=True))
    claimed = await store.transition_task(
        "t1", task.id, "running", expected=frozenset({"queued"}), handover_pending=False
    )
    assert claimed is not None and not claimed.handover_pending
    assert await store.pending_handovers() == []


async def test_a_run_is_taken_over_only_from_its_offer(store: SqlRecordStore) -> None:
    task, _ = await store.create_task(make_task(1))
    running = frozenset({"running"})
    await store.transition_task("t1", task.id, "running", expected=frozenset({"queued"}))
    took = await store.transition_task(  # a run from before offers: any offer takes it over
        "t1", task.id, "running", expected=running, from_offer="o1", offer="o1"
    )
    assert took is not None and took.offer == "o1"
    other = await store.transition_task(  # a duplicate's offer does not
        "t1", task.id, "running", expected=running, from_offer="o2", offer="o2"
    )
    assert other is None
    same = await store.transition_task(
        "t1", task.id, "running", expected=running, from_offer="o1", offer="o1"
    )
    assert same is not None and same.offer == "o1"


async def test_a_claim_counts_the_attempt(store: SqlRecordStore) -> None:
    task, _ = await store.create_task(make_task(1))
    running = frozenset({"running"})
    first = await store.transition_task(
        "t1", task.id, "running", expected=frozenset({"queued"}), count_attempt=True
    )
    assert first is not None and first.attempts == 1
    again = await store.transition_task(  # a redelivery taking the run over counts too
        "t1", task.id, "running", expected=running, from_offer="o1", count_attempt=True
    )
    assert again is not None and again.attempts == 2
    missed = await store.transition_task(
        "t1", task.id, "running", expected=frozenset({"queued"}), count_attempt=True
    )
    assert missed is None
    done = await store.transition_task("t1", task.id, "succeeded", expected=running)
    assert done is not None and done.attempts == 2


async def test_a_lone_surrogate_stored_as_json_reads_back(store: SqlRecordStore) -> None:
    """orjson refuses to read the escape the store wrote (an older version could); the row
    stays readable, so its task can still be run to an outcome and cancelled, while a list,
    which could not serve it, leaves it out (issue 11: lists survive a bad row)."""
    task, _ = await store.create_task(make_task(1, input="x\ud800y", metadata={"k": "\udfff"}))
    fine, _ = await store.create_task(make_task(2))
    read = await store.get_task("t1", task.id)
    assert read is not None and read.input == "x\ud800y" and read.metadata == {"k": "\udfff"}
    page = await store.list_tasks("t1")
    assert [t.id for t in page.items] == [fine.id]


async def test_many_hand_overs_are_noted_at_once(store: SqlRecordStore) -> None:
    tasks_ = [make_task(n, handover_pending=True) for n in range(2500)]
    for task in tasks_:
        await store.create_task(task)
    ids = [t.id for t in tasks_]
    await store.offering(ids + [f"task_unknown_{n}" for n in range(35_000)])
    assert all(t.handover_at is not None for t in await store.pending_handovers(limit=3000))
    await store.handed_over(ids + [f"task_unknown_{n}" for n in range(35_000)])
    assert await store.pending_handovers() == []


async def test_stale_hand_overs_are_taken_over_once(
    store: SqlRecordStore, backend_url: str
) -> None:
    now = datetime.now(UTC)
    old, recent = now - timedelta(minutes=5), now - timedelta(seconds=5)
    stranded = [
        (await store.create_task(make_task(n, handover_pending=True, created_at=old)))[0]
        for n in range(1, 4)
    ]
    offered = (await store.create_task(make_task(4, handover_pending=True, created_at=old)))[0]
    fresh = (await store.create_task(make_task(5, handover_pending=True, created_at=now)))[0]
    await store.create_task(make_task(6, created_at=old))  # handed over
    await store.offering([offered.id])  # a live process is still on it
    await store.transition_task(  # stranded and cancelled: still taken (its outcome goes out)
        "t1", stranded[2].id, "cancelled", expected=frozenset({"queued"})
    )
    other = SqlRecordStore.from_url(backend_url)  # another server on the same records
    try:
        first, second = await asyncio.gather(
            store.take_stale_handovers(stale_before=recent, limit=2),
            other.take_stale_handovers(stale_before=recent, limit=2),
        )
    finally:
        await other.close()
    taken = sorted(t.id for t in first + second)
    assert taken == sorted(t.id for t in stranded)  # each once, by one taker
    assert all(t.handover_at is not None and t.handover_at >= now for t in first + second)
    assert await store.take_stale_handovers(stale_before=recent) == []  # marked: not again
    later = datetime.now(UTC) + timedelta(minutes=10)
    again = await store.take_stale_handovers(stale_before=later)  # none said it since
    assert sorted(t.id for t in again) == sorted([*taken, offered.id, fresh.id])


async def test_task_transitions_are_conditional_and_recorded(store: SqlRecordStore) -> None:
    task, _ = await store.create_task(make_task(1))
    running = await store.transition_task(
        "t1", task.id, "running", expected=frozenset({"queued"}), attempts=1
    )
    assert running is not None and running.status == "running" and running.attempts == 1
    assert (
        await store.transition_task("t1", task.id, "running", expected=frozenset({"queued"}))
        is None
    )
    done = await store.transition_task(
        "t1",
        task.id,
        "succeeded",
        expected=frozenset({"running"}),
        output="done",
        detail={"worker": "w1"},
    )
    assert done is not None and done.output == "done" and done.updated_at > task.updated_at
    moves = await store.task_transitions("t1", task.id)
    assert [m.status for m in moves] == ["queued", "running", "succeeded"]
    assert moves[-1].detail == {"worker": "w1"}
    assert all(m.at.tzinfo is not None for m in moves)
    assert await store.task_transitions("t2", task.id) == []
    assert (
        await store.transition_task("t2", task.id, "cancelled", expected=frozenset({"succeeded"}))
        is None
    )
    # expecting no status at all matches nothing (not everything)
    assert await store.transition_task("t1", task.id, "dead", expected=frozenset()) is None
    assert (await store.get_task("t1", task.id)).status == "succeeded"  # type: ignore[union-attr]


async def test_list_tasks_filters_and_pages(store: SqlRecordStore) -> None:
    made = [
        (await store.create_task(make_task(n, agent="a" if n % 2 else "b")))[0] for n in range(1, 6)
    ]
    await store.transition_task("t1", made[0].id, "cancelled", expected=frozenset({"queued"}))
    queued = await store.list_tasks("t1", status="queued", limit=2)
    assert [t.id for t in queued.items] == [made[4].id, made[3].id] and queued.next_cursor
    rest = await store.list_tasks("t1", status="queued", limit=2, cursor=queued.next_cursor)
    assert [t.id for t in rest.items] == [made[2].id, made[1].id]
    assert [t.id for t in (await store.list_tasks("t1", agent="b")).items] == [
        made[3].id,
        made[1].id,
    ]
    assert (await store.list_tasks("t2")).items == []
