"""Group commit's commit delay: while the loop is busy (others may write too), writes wait for
more, ``delay_s`` at most; on an idle loop they go at once. The transactions are recorded by the
``begin`` the group commit is built with."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shipyard.app import open_record_store
from shipyard.config import Settings
from shipyard.stores._group_commit import GroupCommit
from shipyard.stores.records.base import TaskRecord
from shipyard.stores.records.sql import SqlRecordStore


class Transactions:
    """A ``begin`` that records which writes each transaction held."""

    def __init__(self) -> None:
        self.held: list[list[int]] = []

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[list[int]]:
        writes: list[int] = []
        yield writes
        self.held.append(writes)


def write(n: int) -> Callable[[list[int]], Awaitable[int]]:
    async def work(writes: list[int]) -> int:
        writes.append(n)
        return n

    return work


def spin(seconds: float) -> None:
    """CPU work on the loop (a turn that runs something)."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


async def busy(turns: int, then: Callable[[int], None] = lambda _: None) -> None:
    """A loop kept busy for ``turns`` turns of ~1 ms; ``then(turn)`` after each."""
    for turn in range(turns):
        spin(0.001)
        then(turn)
        await asyncio.sleep(0)


async def test_on_an_idle_loop_a_write_goes_at_once() -> None:
    log = Transactions()
    group = GroupCommit(log.begin, delay_s=3600)
    assert await asyncio.wait_for(group.run(write(1)), 10) == 1
    writes = [asyncio.ensure_future(group.run(write(n))) for n in (2, 3)]
    assert await asyncio.wait_for(asyncio.gather(*writes), 10) == [2, 3]
    assert log.held == [[1], [2, 3]]


async def test_while_the_loop_is_busy_writes_wait_for_more() -> None:
    log = Transactions()
    group = GroupCommit(log.begin, delay_s=3600)
    late: list[asyncio.Future[int]] = []

    def third(turn: int) -> None:
        if turn == 20:  # others keep running meanwhile: the first two are still waiting
            late.append(asyncio.ensure_future(group.run(write(3))))

    first = [asyncio.ensure_future(group.run(write(n))) for n in (1, 2)]
    await busy(40, third)
    assert not any(f.done() for f in first)
    assert await asyncio.wait_for(asyncio.gather(*first, *late), 10) == [1, 2, 3]
    assert log.held == [[1, 2, 3]]  # then the loop idles: one transaction for all three


async def test_a_busy_loop_holds_writes_for_delay_s_at_most() -> None:
    log = Transactions()
    group = GroupCommit(log.begin, delay_s=0.05)
    writes = [asyncio.ensure_future(group.run(write(n))) for n in (1, 2)]
    spinning = asyncio.ensure_future(busy(5000))  # ~5 s
    try:
        assert await asyncio.wait_for(asyncio.gather(*writes), 10) == [1, 2]
        assert not spinning.done()
    finally:
        spinning.cancel()
    assert log.held == [[1, 2]]


async def test_without_a_delay_writes_go_at_once_on_a_busy_loop() -> None:
    log = Transactions()
    group = GroupCommit(log.begin)
    first = [asyncio.ensure_future(group.run(write(n))) for n in (1, 2)]
    await busy(20)
    assert all(f.done() for f in first)
    await group.run(write(3))
    assert log.held == [[1, 2], [3]]


def test_a_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="delay_s"):
        GroupCommit(Transactions().begin, delay_s=-0.001)


def _task(n: int) -> TaskRecord:
    now = datetime.now(UTC)
    return TaskRecord(
        id=f"task-{n}",
        tenant_id="acme",
        agent="echo",
        status="queued",
        input="hi",
        metadata={},
        created_at=now,
        updated_at=now,
    )


async def test_the_record_store_takes_its_delay_from_the_composition_root(tmp_path: Path) -> None:
    store = open_record_store(f"sqlite:///{tmp_path / 'r.db'}", commit_delay_s=3600)
    assert isinstance(store, SqlRecordStore)
    await store.migrate()
    try:
        first = [asyncio.ensure_future(store.create_task(_task(n))) for n in (1, 2)]
        await busy(100)  # ~100 ms: the default delay (2 ms) would have let them go
        assert not any(f.done() for f in first)
        created = await asyncio.wait_for(asyncio.gather(*first), 10)
        assert [task.id for task, _ in created] == ["task-1", "task-2"]
    finally:
        await store.close()


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().record_commit_delay_s is None  # the backend's default
    monkeypatch.setenv("SHIPYARD_RECORD_COMMIT_DELAY_S", "0.01")
    assert Settings().record_commit_delay_s == 0.01
    monkeypatch.setenv("SHIPYARD_RECORD_COMMIT_DELAY_S", "-1")
    with pytest.raises(ValueError, match="record_commit_delay_s"):
        Settings()
