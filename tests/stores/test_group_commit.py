"""Group commit's commit delay: writes that wait together wait a little for more; a lone one never
waits. The transactions are recorded by the ``begin`` the group commit is built with."""

from __future__ import annotations

import asyncio
import contextlib
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


async def test_a_lone_write_never_waits() -> None:
    log = Transactions()
    group = GroupCommit(log.begin, delay_s=3600)
    assert await asyncio.wait_for(group.run(write(1)), 10) == 1
    assert log.held == [[1]]


async def test_waiting_writes_take_the_ones_that_come_during_the_delay() -> None:
    log = Transactions()
    group = GroupCommit(log.begin, delay_s=2.0)
    first = [asyncio.ensure_future(group.run(write(n))) for n in (1, 2)]
    await asyncio.sleep(0.05)
    assert not any(f.done() for f in first)  # two waited together: the delay holds them
    third = asyncio.ensure_future(group.run(write(3)))
    assert await asyncio.gather(*first, third) == [1, 2, 3]
    assert log.held == [[1, 2, 3]]


async def test_without_a_delay_waiting_writes_go_at_once() -> None:
    log = Transactions()
    group = GroupCommit(log.begin)
    first = [asyncio.ensure_future(group.run(write(n))) for n in (1, 2)]
    await asyncio.sleep(0.05)
    assert all(f.done() for f in first)
    await group.run(write(3))
    assert log.held == [[1, 2], [3]]


async def test_siblings_sets_how_many_waiting_writes_start_the_delay() -> None:
    log = Transactions()
    group = GroupCommit(log.begin, delay_s=3600, siblings=3)
    two = [asyncio.ensure_future(group.run(write(n))) for n in (1, 2)]
    assert await asyncio.wait_for(asyncio.gather(*two), 10) == [1, 2]
    assert log.held == [[1, 2]]


@pytest.mark.parametrize(("delay_s", "siblings"), [(-0.001, 2), (0.002, 0)])
def test_bad_delay_or_siblings_are_refused(delay_s: float, siblings: int) -> None:
    with pytest.raises(ValueError, match="delay_s"):
        GroupCommit(Transactions().begin, delay_s=delay_s, siblings=siblings)


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
    store = open_record_store(f"sqlite:///{tmp_path / 'r.db'}", commit_delay_s=2.0)
    assert isinstance(store, SqlRecordStore)
    await store.migrate()
    try:
        first = [asyncio.ensure_future(store.create_task(_task(n))) for n in (1, 2)]
        await asyncio.sleep(0.05)
        assert not any(f.done() for f in first)
        late = asyncio.ensure_future(store.create_task(_task(3)))
        created = await asyncio.gather(*first, late)
        assert [task.id for task, _ in created] == ["task-1", "task-2", "task-3"]
    finally:
        await store.close()


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().record_commit_delay_s is None  # the backend's default
    monkeypatch.setenv("SHIPYARD_RECORD_COMMIT_DELAY_S", "0.01")
    assert Settings().record_commit_delay_s == 0.01
    monkeypatch.setenv("SHIPYARD_RECORD_COMMIT_DELAY_S", "-1")
    with pytest.raises(ValueError, match="record_commit_delay_s"):
        Settings()
