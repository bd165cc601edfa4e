"""The queue depth gauge samples ``QueueStats.depth`` of a real broker, on every backend."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from shipyard.stores.broker.base import Broker
from shipyard.telemetry.metrics import Metrics
from tests.stores.broker.test_contract import receive, task
from tests.telemetry.scrape import Scrape


async def sampled(metrics: Metrics, queue: str, value: float) -> None:
    for _ in range(200):
        if Scrape(metrics.render().decode())["shipyard_queue_depth", {"queue": queue}] == value:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the depth of {queue!r} never read {value}")


async def test_the_depth_gauge_follows_the_queue(broker: Broker) -> None:
    for n in range(3):
        await broker.publish(task(n))
    await broker.publish(task(9), queue="other")
    metrics = Metrics()
    await metrics.start(queues=broker, names=("tasks", "other"), sample_s=0.05)
    try:
        await sampled(metrics, "tasks", 3)
        await sampled(metrics, "other", 1)
        async with broker.consume(prefetch=1) as deliveries:
            delivery = await receive(deliveries)
            await sampled(metrics, "tasks", 2)  # in flight: not waiting
            await delivery.ack()
    finally:
        await metrics.close()


async def test_a_broker_that_is_down_does_not_stop_the_sampler(broker: Broker) -> None:
    metrics = Metrics()
    await broker.close()  # every depth call fails from now on
    with capture_logs() as logs:
        await metrics.start(queues=broker, sample_s=0.02)
        await asyncio.sleep(0.2)
        await metrics.close()  # would raise what a dead sampler died of
    warned = [e for e in logs if e["event"] == "queue depth unavailable"]
    assert len(warned) == 1  # once per outage, not once per sample
