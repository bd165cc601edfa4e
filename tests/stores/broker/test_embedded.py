"""What only the embedded broker does: URLs, its table, restarts, leases, several instances."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shipyard.errors import ConfigError
from shipyard.stores.broker.base import TaskMessage
from shipyard.stores.broker.embedded import EmbeddedBroker
from tests.stores.broker.test_contract import assert_nothing, receive, task


def open_broker(path: Path, *, lease_s: float = 30.0) -> EmbeddedBroker:
    return EmbeddedBroker.from_url(f"sqlite:///{path}", lease_s=lease_s, poll_interval_s=0.05)


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "sqlite:///x.db?mode=ro", "redis://h:6379/0"]
)
def test_from_url_wants_a_file(url: str) -> None:
    with pytest.raises(ConfigError):
        EmbeddedBroker.from_url(url)


async def test_messages_live_in_broker_messages(tmp_path: Path) -> None:
    broker = open_broker(tmp_path / "b.db")
    await broker.publish(task(1, priority=2, traceparent="00-ab-cd-01"))
    await broker.close()
    with sqlite3.connect(tmp_path / "b.db") as conn:
        row = conn.execute(
            "SELECT queue, task_id, tenant_id, priority, attempts, state FROM broker_messages"
        ).fetchone()
    conn.close()
    assert row == ("tasks", "task-1", "acme", 2, 1, "queued")


async def test_a_row_that_is_no_message_is_dead_at_once(tmp_path: Path) -> None:
    """A row no worker could take (damaged, or written by something else) goes to the dead
    letters at its first claim; the messages beside it are delivered."""
    broker = open_broker(tmp_path / "b.db")
    try:
        await broker.publish(task(1))
        await broker.publish(task(2))
        with sqlite3.connect(tmp_path / "b.db") as conn:
            conn.execute(
                "UPDATE broker_messages SET headers = '{not json' WHERE task_id = ?", ("task-1",)
            )
        conn.close()
        async with broker.consume(prefetch=4) as deliveries:
            delivery = await receive(deliveries)
            assert delivery.message.task_id == "task-2"
            await delivery.ack()
            await assert_nothing(deliveries)
        assert await broker.dead_letters() == []  # (it cannot be shown as a message)
        assert await broker.depth() == 0
    finally:
        await broker.close()
    with sqlite3.connect(tmp_path / "b.db") as conn:
        row = conn.execute(
            "SELECT state, dead_reason FROM broker_messages WHERE task_id = 'task-1'"
        )
        assert row.fetchone() == ("dead", "undecodable")
    conn.close()


async def test_concurrent_publishes_share_commits_and_all_land(tmp_path: Path) -> None:
    broker = open_broker(tmp_path / "b.db")
    commits = 0
    batch = broker._batch

    @contextlib.asynccontextmanager
    async def counted() -> AsyncIterator[list[tuple[str, TaskMessage]]]:
        nonlocal commits
        commits += 1
        async with batch() as messages:
            yield messages

    broker._publishes._begin = counted  # count the transactions, keep the real ones
    await asyncio.gather(*(broker.publish(task(n)) for n in range(50)))
    await broker.close()
    with sqlite3.connect(tmp_path / "b.db") as conn:
        ids = [r[0] for r in conn.execute("SELECT task_id FROM broker_messages ORDER BY id")]
    conn.close()
    assert ids == [f"task-{n}" for n in range(50)]  # every one, in order
    assert commits < 50  # and fewer transactions than publishes


async def test_close_writes_the_publishes_it_had_accepted(tmp_path: Path) -> None:
    broker = open_broker(tmp_path / "b.db")
    publishes = [asyncio.create_task(broker.publish(task(n))) for n in range(20)]
    await asyncio.sleep(0)  # the first batch is on its way; the rest wait for the next
    await broker.close()
    results = await asyncio.gather(*publishes, return_exceptions=True)
    assert results == [None] * 20  # none failed for the close...
    with sqlite3.connect(tmp_path / "b.db") as conn:
        ids = [r[0] for r in conn.execute("SELECT task_id FROM broker_messages ORDER BY id")]
    conn.close()
    assert ids == [f"task-{n}" for n in range(20)]  # ...and every one is stored


async def test_queued_delayed_and_dead_messages_survive_a_restart(tmp_path: Path) -> None:
    broker = open_broker(tmp_path / "b.db")
    for n, priority in ((1, 0), (2, 9), (3, 0), (4, 0)):
        await broker.publish(task(n, priority=priority))
    async with broker.consume(prefetch=2) as deliveries:
        await (await receive(deliveries)).dead("poison")  # task-2, the urgent one
        await (await receive(deliveries)).retry(0.5)  # task-1
    await broker.close()

    reopened = open_broker(tmp_path / "b.db")
    try:
        assert await reopened.depth() == 2
        assert [d.reason for d in await reopened.dead_letters()] == ["poison"]
        async with reopened.consume(prefetch=1) as deliveries:
            order = []
            for _ in range(3):
                delivery = await receive(deliveries)
                order.append((delivery.message.task_id, delivery.message.attempt))
                await delivery.ack()
        assert order == [("task-3", 1), ("task-4", 1), ("task-1", 2)]
    finally:
        await reopened.close()


async def test_deliveries_unsettled_at_close_come_back_flagged(tmp_path: Path) -> None:
    broker = open_broker(tmp_path / "b.db")
    await broker.publish(task(1))
    async with broker.consume(prefetch=1) as deliveries:
        await receive(deliveries)
        await broker.close()
    reopened = open_broker(tmp_path / "b.db")
    try:
        async with reopened.consume(prefetch=1) as deliveries:
            delivery = await receive(deliveries)
            assert delivery.redelivered
            await delivery.ack()
    finally:
        await reopened.close()


async def test_a_live_consumer_keeps_its_lease(tmp_path: Path) -> None:
    """Leases are renewed while the holder runs: nobody else gets the message meanwhile."""
    holder, other = (open_broker(tmp_path / "b.db", lease_s=0.3) for _ in range(2))
    try:
        await holder.publish(task(1))
        async with holder.consume(prefetch=1) as mine, other.consume(prefetch=1) as theirs:
            held = await receive(mine)
            await assert_nothing(theirs, wait=1.0)  # three lease periods
            await held.ack()
    finally:
        await holder.close()
        await other.close()


async def test_instances_on_one_file_see_each_other_by_polling(tmp_path: Path) -> None:
    producer, consumer = open_broker(tmp_path / "b.db"), open_broker(tmp_path / "b.db")
    try:
        async with consumer.consume(prefetch=1) as deliveries:
            waiting = asyncio.ensure_future(receive(deliveries))
            await asyncio.sleep(0.1)
            await producer.publish(task(1))
            delivery = await waiting
            assert delivery.message == task(1)
            await delivery.ack()
    finally:
        await producer.close()
        await consumer.close()


async def test_a_timeout_around_the_iteration_loses_nothing(tmp_path: Path) -> None:
    """A cancelled wait may have leased messages already: they stay with the consumer."""
    broker = open_broker(tmp_path / "b.db")
    try:
        async with broker.consume(prefetch=10) as deliveries:
            for n in range(20):
                await broker.publish(task(n))
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(anext(deliveries), 0)
            seen = []
            for _ in range(20):
                delivery = await receive(deliveries)
                seen.append(delivery.message.task_id)
                await delivery.ack()
        assert sorted(seen) == sorted(f"task-{n}" for n in range(20))
    finally:
        await broker.close()
