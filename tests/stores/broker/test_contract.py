"""The broker contract: the same assertions on every backend (see conftest ``backend``).

Timing is asserted only as "not before the delay" and "within a few seconds after it".
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator

import pytest

from shipyard.errors import StoreError
from shipyard.stores.broker.base import Broker, Delivery, TaskMessage
from tests.servers import ROOT
from tests.stores.broker.conftest import Backend

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
NOTHING_S = 0.4  # how long "nothing more arrives" is watched


def task(n: int = 1, *, priority: int = 0, tenant: str = "acme", **headers: str) -> TaskMessage:
    return TaskMessage(
        task_id=f"task-{n}",
        tenant_id=tenant,
        agent="echo",
        body=b'{"input": %d}' % n,
        priority=priority,
        headers=headers,
    )


async def receive(deliveries: AsyncIterator[Delivery], within: float = 5) -> Delivery:
    return await asyncio.wait_for(anext(deliveries), within)


async def assert_nothing(deliveries: AsyncIterator[Delivery], wait: float = NOTHING_S) -> None:
    with pytest.raises(TimeoutError):
        extra = await asyncio.wait_for(anext(deliveries), wait)
        await extra.nack(requeue=True)


# -- publish, consume, settle -------------------------------------------------------------------


async def test_publish_consume_ack(broker: Broker) -> None:
    sent = task(1)
    await broker.publish(sent)
    async with broker.consume(prefetch=1) as deliveries:
        delivery = await receive(deliveries)
        assert delivery.message == sent
        assert not delivery.redelivered
        await delivery.ack()
        await assert_nothing(deliveries)
    assert await broker.depth() == 0
    assert await broker.dead_letters() == []


async def test_fifo_within_a_priority(broker: Broker) -> None:
    for n in range(5):
        await broker.publish(task(n))
    async with broker.consume(prefetch=5) as deliveries:
        got = [await receive(deliveries) for _ in range(5)]
        assert [d.message.task_id for d in got] == [f"task-{n}" for n in range(5)]
        for delivery in got:
            await delivery.ack()


async def test_queues_are_separate(broker: Broker) -> None:
    await broker.publish(task(1), queue="other")
    async with broker.consume("tasks", prefetch=1) as deliveries:
        await assert_nothing(deliveries)
    async with broker.consume("other", prefetch=1) as deliveries:
        await (await receive(deliveries)).ack()


async def test_nack_requeue_redelivers(broker: Broker) -> None:
    await broker.publish(task(1))
    async with broker.consume(prefetch=1) as deliveries:
        first = await receive(deliveries)
        await first.nack(requeue=True)
        again = await receive(deliveries)
        assert again.message == first.message  # same attempt: a requeue is not a retry
        assert again.redelivered
        await again.ack()


async def test_settling_twice_is_an_error(broker: Broker) -> None:
    await broker.publish(task(1))
    async with broker.consume(prefetch=1) as deliveries:
        delivery = await receive(deliveries)
        await delivery.ack()
        with pytest.raises(RuntimeError, match="settled"):
            await delivery.ack()
        with pytest.raises(RuntimeError, match="settled"):
            await delivery.nack(requeue=True)


async def test_acks_in_any_order_settle_exactly_their_deliveries(broker: Broker) -> None:
    """Acks of one moment settle those deliveries only (RabbitMQ sends them together: never
    one an unfinished delivery before them), and one behind an unsettled one frees its slot."""
    for n in range(1, 6):
        await broker.publish(task(n))
    async with broker.consume(prefetch=4) as deliveries:
        first, second, third, fourth = [await receive(deliveries) for _ in range(4)]
        await asyncio.gather(second.ack(), third.ack())  # behind the unsettled first
        fifth = await receive(deliveries)  # their slots are free
        await asyncio.gather(fourth.ack(), fifth.ack(), first.nack(requeue=True))
        again = await receive(deliveries)
        assert again.message == first.message  # not settled by the others' acks
        await again.ack()
        await assert_nothing(deliveries)
    assert await broker.depth() == 0


async def test_many_acks_at_once_all_settle(broker: Broker) -> None:
    for n in range(40):
        await broker.publish(task(n))
    async with broker.consume(prefetch=40) as deliveries:
        taken = [await receive(deliveries) for _ in range(40)]
        await asyncio.gather(*(d.ack() for d in reversed(taken)))
        await assert_nothing(deliveries)
    async with broker.consume(prefetch=40) as deliveries:  # nothing comes back either
        await assert_nothing(deliveries)
    assert await broker.depth() == 0


# -- nothing lost when a consumer goes away -----------------------------------------------------


async def test_unsettled_delivery_comes_back_when_its_consumer_leaves(backend: Backend) -> None:
    producer, worker = backend.open(), backend.open()
    await producer.publish(task(1))
    async with worker.consume(prefetch=1) as deliveries:
        held = await receive(deliveries)
    await worker.close()  # the worker's connection is gone too
    async with producer.consume(prefetch=1) as deliveries:
        again = await receive(deliveries)
        assert again.message == held.message
        assert again.redelivered
        await again.ack()
    with pytest.raises(StoreError):
        await held.ack()  # handed back: too late to settle


async def test_delivery_of_a_killed_worker_comes_back(backend: Backend) -> None:
    broker = backend.open()
    await broker.publish(task(1))
    child = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "tests.stores.broker.worker_child", *backend.child_args(), "tasks"],
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 20)
        assert line.split() == [b"got", b"task-1"]
        async with broker.consume(prefetch=1) as deliveries:
            await assert_nothing(deliveries, 0.2)  # the worker holds it
            child.send_signal(signal.SIGKILL)
            again = await receive(deliveries)
            assert again.message == task(1)
            assert again.redelivered
            await again.ack()
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()


# -- retries and dead letters -------------------------------------------------------------------


async def test_retry_redelivers_after_the_delay_with_the_next_attempt(broker: Broker) -> None:
    sent = task(1, traceparent=TRACEPARENT)
    await broker.publish(sent)
    async with broker.consume(prefetch=1) as deliveries:
        first = await receive(deliveries)
        retried_at = time.monotonic()
        await first.retry(0.3)
        assert await broker.depth() == 0  # delayed, not waiting
        again = await receive(deliveries)
        assert time.monotonic() - retried_at >= 0.25
        assert again.message.attempt == 2
        assert again.message.task_id == sent.task_id
        assert again.message.headers == sent.headers
        assert again.message.body == sent.body
        assert not again.redelivered  # a retry is a new delivery
        await again.retry(0.001)
        third = await receive(deliveries)
        assert third.message.attempt == 3
        await third.ack()


async def test_dead_goes_to_the_dead_letters_with_the_reason(broker: Broker) -> None:
    await broker.publish(task(1, priority=3, traceparent=TRACEPARENT))
    await broker.publish(task(2))
    async with broker.consume(prefetch=2) as deliveries:
        await (await receive(deliveries)).dead("always fails: ValueError")
        await (await receive(deliveries)).nack(requeue=False)
        await assert_nothing(deliveries)
    letters = await broker.dead_letters()
    assert [(d.message.task_id, d.reason) for d in letters] == [
        ("task-1", "always fails: ValueError"),
        ("task-2", "rejected"),
    ]
    assert letters[0].message == task(1, priority=3, traceparent=TRACEPARENT)
    assert await broker.dead_letters() == letters  # reading does not remove them
    assert len(await broker.dead_letters(limit=1)) == 1
    assert await broker.depth() == 0


# -- ordering and flow control ------------------------------------------------------------------


async def test_higher_priority_first(broker: Broker) -> None:
    await broker.publish(task(1, priority=0))
    await broker.publish(task(2, priority=5))
    await broker.publish(task(3, priority=9))
    await broker.publish(task(4, priority=5))
    async with broker.consume(prefetch=1) as deliveries:
        order = []
        for _ in range(4):
            delivery = await receive(deliveries)
            order.append(delivery.message.task_id)
            await delivery.ack()
    assert order == ["task-3", "task-2", "task-4", "task-1"]


async def test_prefetch_bounds_unsettled_deliveries(broker: Broker) -> None:
    for n in range(5):
        await broker.publish(task(n))
    async with broker.consume(prefetch=2) as deliveries:
        first, second = await receive(deliveries), await receive(deliveries)
        await assert_nothing(deliveries)
        await first.ack()
        third = await receive(deliveries)
        await assert_nothing(deliveries)
        assert await broker.depth() == 2
        for delivery in (second, third):
            await delivery.ack()


async def test_competing_consumers_share_the_work(backend: Backend) -> None:
    producer, a, b = backend.open(), backend.open(), backend.open()
    for n in range(6):
        await producer.publish(task(n))
    seen: list[str] = []
    async with a.consume(prefetch=1) as from_a, b.consume(prefetch=1) as from_b:
        for _ in range(3):
            for deliveries in (from_a, from_b):
                delivery = await receive(deliveries)
                seen.append(delivery.message.task_id)
                await delivery.ack()
    assert sorted(seen) == [f"task-{n}" for n in range(6)]


# -- headers, results, depth --------------------------------------------------------------------


async def test_headers_round_trip(broker: Broker) -> None:
    sent = task(7, priority=4, tenant="tenant-β", traceparent=TRACEPARENT, tracestate="k=v,x=ü")
    await broker.publish(sent)
    async with broker.consume(prefetch=1) as deliveries:
        delivery = await receive(deliveries)
        assert delivery.message == sent
        assert delivery.message.tenant_id == "tenant-β"
        assert delivery.message.headers == {"traceparent": TRACEPARENT, "tracestate": "k=v,x=ü"}
        await delivery.ack()


async def test_publish_result_reaches_matching_subscribers(broker: Broker) -> None:
    event = b'{"specversion": "1.0", "type": "shipyard.task.succeeded"}'
    async with (
        broker.subscribe_results("acme.*") as acme,
        broker.subscribe_results("#") as everything,
    ):
        await broker.publish_result(b"other", routing_key="globex.echo")
        await broker.publish_result(event, routing_key="acme.echo")
        got = await asyncio.wait_for(anext(acme), 5)
        assert (got.routing_key, got.event) == ("acme.echo", event)
        keys = [(await asyncio.wait_for(anext(everything), 5)).routing_key for _ in range(2)]
        assert keys == ["globex.echo", "acme.echo"]
    await broker.publish_result(event, routing_key="acme.echo")  # nobody listening: dropped


async def test_depth_counts_waiting_messages(broker: Broker) -> None:
    assert await broker.depth() == 0
    for n in range(3):
        await broker.publish(task(n))
    assert await broker.depth() == 3
    assert await broker.depth("other") == 0
    async with broker.consume(prefetch=1) as deliveries:
        delivery = await receive(deliveries)
        assert await broker.depth() == 2  # in flight: not waiting
        await delivery.retry(30)
    assert await broker.depth() == 2  # delayed: not waiting either


# -- lifecycle and failures ---------------------------------------------------------------------


async def test_close_ends_the_iteration(broker: Broker) -> None:
    async with broker.consume(prefetch=1) as deliveries:
        waiting = asyncio.ensure_future(anext(deliveries))
        await asyncio.sleep(0.1)
        await broker.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiting, 5)
    with pytest.raises(StoreError):
        await broker.publish(task(1))


async def test_unreachable_broker_raises_store_error(backend: Backend) -> None:
    with pytest.raises(StoreError):
        broker = backend.unreachable()
        try:
            await broker.publish(task(1))
        finally:
            await broker.close()
