"""Many writes at once, on every backend (SQLite takes them through group commit): each gets
its own answer, and one write's failure is its alone."""

from __future__ import annotations

import asyncio

import pytest

from shipyard.errors import StoreError, StoreRejected
from shipyard.stores.records.base import TaskRecord
from shipyard.stores.records.sql import SqlRecordStore
from tests.stores.records.test_contract import make_task


async def test_concurrent_creates_and_moves_each_get_their_own_answer(
    store: SqlRecordStore,
) -> None:
    tasks = [make_task(n) for n in range(200)]
    created = await asyncio.gather(*(store.create_task(t) for t in tasks))
    assert [(t.id, fresh) for t, fresh in created] == [(t.id, True) for t in tasks]

    # half are claimed twice at once: exactly one claim of each wins
    claims = [
        store.transition_task("t1", t.id, "running", expected=frozenset({"queued"}), attempts=1)
        for t in tasks[:100]
        for _ in range(2)
    ]
    results = await asyncio.gather(*claims)
    won = [r for r in results if r is not None]
    assert sorted(r.id for r in won) == sorted(t.id for t in tasks[:100])
    assert all(r.status == "running" and r.attempts == 1 for r in won)
    for task in tasks[:3]:
        moves = await store.task_transitions("t1", task.id)
        assert [m.status for m in moves] == ["queued", "running"]


async def test_one_failing_write_does_not_fail_the_others(store: SqlRecordStore) -> None:
    first = make_task(1)
    await store.create_task(first)
    again = make_task(2).model_copy(update={"id": first.id})  # the same primary key: refused
    others = [make_task(n) for n in range(3, 23)]
    results = await asyncio.gather(
        *(store.create_task(t) for t in [*others[:10], again, *others[10:]]),
        return_exceptions=True,
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1 and isinstance(failures[0], StoreError)
    for task in others:
        assert await store.get_task("t1", task.id) is not None


async def test_a_cancelled_caller_does_not_stop_the_others(store: SqlRecordStore) -> None:
    tasks = [make_task(n) for n in range(30)]
    running = [asyncio.create_task(store.create_task(t)) for t in tasks]
    await asyncio.sleep(0)
    running[5].cancel()
    done = await asyncio.gather(*running, return_exceptions=True)
    assert isinstance(done[5], asyncio.CancelledError)
    for n, task in enumerate(tasks):
        if n != 5:
            assert await store.get_task("t1", task.id) is not None


@pytest.mark.parametrize("writes", [1, 50])
async def test_writes_after_a_quiet_spell_still_commit(store: SqlRecordStore, writes: int) -> None:
    for round_ in range(2):
        batch = [make_task(100 * round_ + n) for n in range(writes)]
        await asyncio.gather(*(store.create_task(t) for t in batch))
        await asyncio.sleep(0.01)
        for task in batch:
            assert await store.get_task("t1", task.id) is not None


async def test_a_refused_move_among_many_is_refused_alone(store: SqlRecordStore) -> None:
    """On PostgreSQL the moves of the moment share one statement (``task_moves``): the one
    whose data is refused is refused alone, and the others commit."""
    tasks = [make_task(n) for n in range(20)]
    await asyncio.gather(*(store.create_task(t) for t in tasks))
    running = frozenset({"queued"})
    await asyncio.gather(
        *(store.transition_task("t1", t.id, "running", expected=running) for t in tasks)
    )
    outputs = ["ok"] * len(tasks)
    outputs[7] = "a\ud800b"  # a lone surrogate no driver can encode
    results = await asyncio.gather(
        *(
            store.transition_task(
                "t1", t.id, "succeeded", expected=frozenset({"running"}), output=output
            )
            for t, output in zip(tasks, outputs, strict=True)
        ),
        return_exceptions=True,
    )
    assert isinstance(results[7], StoreRejected)
    done = [r for n, r in enumerate(results) if n != 7]
    assert all(
        isinstance(r, TaskRecord) and (r.status, r.output) == ("succeeded", "ok") for r in done
    )
    assert [r.id for r in done if isinstance(r, TaskRecord)] == [
        t.id for n, t in enumerate(tasks) if n != 7
    ]
    refused = await store.get_task("t1", tasks[7].id)
    assert refused is not None and refused.status == "running"
    moves = await store.task_transitions("t1", tasks[7].id)
    assert [m.status for m in moves] == ["queued", "running"]
