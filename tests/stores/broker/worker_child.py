"""A worker that takes one delivery and then hangs until killed: ``python -m`` this module with
``backend url prefix lease_s queue``. It prints ``got <task_id>`` once it holds the delivery."""

from __future__ import annotations

import asyncio
import sys

from shipyard.stores.broker.base import Broker
from shipyard.stores.broker.embedded import EmbeddedBroker
from shipyard.stores.broker.rabbitmq import RabbitBroker
from tests.stores.broker.conftest import open_sqs


async def main(backend: str, url: str, prefix: str, lease_s: str, queue: str) -> None:
    broker: Broker
    if backend == "embedded":
        broker = EmbeddedBroker.from_url(url, lease_s=float(lease_s), poll_interval_s=0.05)
    elif backend == "sqs":
        broker = open_sqs(prefix)
    else:
        broker = RabbitBroker.from_url(url, prefix=prefix)
    async with broker.consume(queue, prefetch=1) as deliveries:
        async for delivery in deliveries:
            print("got", delivery.message.task_id, flush=True)
            await asyncio.sleep(3600)  # "working" until SIGKILL


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
