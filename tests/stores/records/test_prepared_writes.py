"""The hot writes run on the driver, compiled once, on every backend with a writer of its own
(a SQLite file, PostgreSQL): a task submitted, its moves and a run's batch never go through
SQLAlchemy's execute; the cold writes that share their transactions still do, and a connection
the driver lost is not used again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from shipyard.errors import StoreError, StoreRejected
from shipyard.stores.records.sql import SqlRecordStore
from tests.stores.records.test_contract import make_event, make_run, make_task, run_id


@contextmanager
def statements_through_sqlalchemy(store: SqlRecordStore) -> Iterator[list[str]]:
    """The SQL that SQLAlchemy's engines run meanwhile (the store's own, and on a SQLite file
    its writer's)."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    engines = [store._engine.sync_engine]
    writer = store._db._loop_first
    if writer is not None:
        engines.append(writer._sync)
    for engine in engines:
        sa.event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        for engine in engines:
            sa.event.remove(engine, "before_cursor_execute", note)


async def test_a_tasks_life_runs_no_statement_through_sqlalchemy(store: SqlRecordStore) -> None:
    await store.create_task(make_task(0))  # the first of each statement may warm up
    tasks = [make_task(n, key=f"k{n}") for n in range(1, 4)]
    rid = run_id(1)
    with statements_through_sqlalchemy(store) as seen:
        for task in tasks:
            assert (await store.create_task(task))[1]
            claimed = await store.transition_task(
                "t1", task.id, "running", expected=frozenset({"queued"}), count_attempt=True
            )
            assert claimed is not None and claimed.attempts == 1
            await store.write_batch(
                [make_run(rid, task_id=task.id)], [make_event(rid, 1), make_event(rid, 2)]
            )
            done = await store.transition_task(
                "t1", task.id, "succeeded", expected=frozenset({"running"}), output="ok"
            )
            assert done is not None and done.output == "ok" and done.cost_usd == 0.0
    assert seen == []
    # what the driver wrote reads back through SQLAlchemy as the same records
    task = await store.get_task("t1", tasks[0].id)
    assert task is not None and task.status == "succeeded" and task.output == "ok"
    assert task.created_at == tasks[0].created_at
    moves = await store.task_transitions("t1", tasks[0].id)
    assert [m.status for m in moves] == ["queued", "running", "succeeded"]
    assert [e.seq for e in await store.list_events("t1", rid)] == [1, 2]


@pytest.mark.postgres
@pytest.mark.parametrize("backend_url", ["postgres"], indirect=True)
async def test_hand_over_notes_on_postgres_are_one_prepared_statement(
    store: SqlRecordStore,
) -> None:
    """PostgreSQL only: SQLite renders an IN list per call (on the loop, no round trips)."""
    assert store._engine.dialect.name == "postgresql"
    tasks = [make_task(n, handover_pending=True) for n in range(1200)]  # > one IN list
    await asyncio.gather(*(store.create_task(t) for t in tasks))
    with statements_through_sqlalchemy(store) as seen:
        await store.offering([t.id for t in tasks[:5]])
        await store.handed_over([t.id for t in tasks[1:]])
    assert seen == []
    pending = await store.pending_handovers()
    assert [t.id for t in pending] == [tasks[0].id]
    assert pending[0].handover_at is not None  # offered, not yet taken
    assert (await store.get_task("t1", tasks[2].id)).handover_at is not None  # type: ignore[union-attr]


async def test_cold_and_hot_writes_share_a_transaction(store: SqlRecordStore) -> None:
    tasks = [make_task(n) for n in range(10)]
    writes = [store.create_task(t) for t in tasks]
    writes += [store.ensure_tenant(f"tenant{n}") for n in range(10)]  # through SQLAlchemy
    await asyncio.gather(*writes)
    for task in tasks:
        assert await store.get_task("t1", task.id) is not None


async def test_data_the_database_refuses_is_a_rejection(store: SqlRecordStore) -> None:
    rid = run_id(1)
    with pytest.raises(StoreRejected):  # the primary key, from a prepared statement
        first = make_task(1)
        await store.create_task(first)
        await store.create_task(make_task(2).model_copy(update={"id": first.id}))
    with pytest.raises(StoreRejected):  # a lone surrogate the driver cannot encode
        await store.write_batch([make_run(rid, output="a\ud800b")], [])


@pytest.mark.postgres
@pytest.mark.parametrize("pause_s", [0.0, 0.2])
@pytest.mark.parametrize("write", ["create", "move"])
async def test_a_lost_connection_is_not_used_again(
    postgres_url: str, pause_s: float, write: str
) -> None:
    """Nor is a batch of creations or moves whose write failed on it (``task_moves``)."""
    store = SqlRecordStore.from_url(postgres_url)
    queued = frozenset({"queued"})
    try:
        await store.migrate()
        first = make_task(1)
        await store.create_task(first)
        admin = await asyncpg.connect(postgres_url)
        try:  # the server drops every other connection to the database
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        # at once, the driver may hear of it amid the next write (its state is then unknown);
        # after a pause, while idle (it is then closed)
        await asyncio.sleep(pause_s)
        with pytest.raises(StoreError):
            if write == "create":
                await store.create_task(make_task(2))
            else:
                await store.transition_task("t1", first.id, "running", expected=queued)
        task = make_task(3)
        await store.create_task(task)
        assert await store.get_task("t1", task.id) is not None
        moved = await store.transition_task("t1", task.id, "running", expected=queued)
        assert moved is not None and moved.status == "running"
    finally:
        await store.close()


@pytest.mark.parametrize("backend_url", ["postgres"], indirect=True)
async def test_moves_of_the_moment_on_postgres_are_one_pipelined_statement(
    store: SqlRecordStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL only (``task_moves``): claims made at once go in one ``fetchmany``, each
    caller gets its own task, and a task claimed twice at once is claimed once."""
    assert store._engine.dialect.name == "postgresql"
    tasks = [make_task(n) for n in range(30)]
    await asyncio.gather(*(store.create_task(t) for t in tasks))
    batches: list[int] = []
    fetchmany = asyncpg.Connection.fetchmany

    async def counted(self: asyncpg.Connection, query: str, args: Any, **kw: Any) -> Any:
        args = list(args)
        batches.append(len(args))
        return await fetchmany(self, query, args, **kw)

    monkeypatch.setattr(asyncpg.Connection, "fetchmany", counted)
    queued = frozenset({"queued"})
    claims = [t.id for t in tasks] + [tasks[0].id]
    results = await asyncio.gather(
        *(
            store.transition_task("t1", i, "running", expected=queued, count_attempt=True)
            for i in claims
        )
    )
    assert [r.id if r else None for r in results[:-1]] == [t.id for t in tasks]
    assert results[-1] is None  # the second claim of the first task, in a write of its own
    assert all(r.attempts == 1 for r in results if r)
    assert batches and max(batches) > 1 and sum(batches) <= len(tasks)
