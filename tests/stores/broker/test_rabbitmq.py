"""What only the RabbitMQ broker does: URLs, errors, and riding out a dropped connection.

The connection is dropped by the server (``rabbitmqctl close_connection`` on this test's own
connection, found by its name); the shared server itself is never stopped.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator

import aio_pika
import pytest

from shipyard.errors import ConfigError, StoreError
from shipyard.stores.broker.rabbitmq import RabbitBroker
from tests.stores.broker.conftest import RABBITMQ_URL, Backend, delete_topology, rabbit_backend
from tests.stores.broker.test_contract import receive, task

pytestmark = pytest.mark.rabbitmq


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "amqp:///", "http://127.0.0.1:5672/", "sqlite:///x.db"]
)
def test_from_url_rejects_other_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        RabbitBroker.from_url(url)


async def test_errors_name_the_server_not_the_password() -> None:
    broker = RabbitBroker.from_url("amqp://user:s3cret@127.0.0.1:1/", timeout_s=2)
    with pytest.raises(StoreError) as caught:
        await broker.ping()
    await broker.close()
    assert "127.0.0.1:1" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert caught.value.__cause__ is not None


def close_connection(name: str) -> None:
    """Have RabbitMQ close the connections named ``name`` (as a network failure would)."""
    rabbitmqctl = shutil.which("rabbitmqctl")
    if rabbitmqctl is None:
        pytest.skip("rabbitmqctl is not installed: cannot drop a connection from the server")
    listed = subprocess.run(
        [rabbitmqctl, "list_connections", "pid", "client_properties", "-q", "--no-table-headers"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    pids = [line.split("\t")[0] for line in listed.splitlines() if f'"{name}"' in line]
    assert pids, f"no connection named {name!r}"
    for pid in pids:
        subprocess.run(
            [rabbitmqctl, "close_connection", pid, "shipyard test: forced close"],
            capture_output=True,
            timeout=30,
            check=True,
        )


@pytest.fixture
async def rabbit() -> AsyncIterator[Backend]:
    backend = await rabbit_backend()
    try:
        yield backend
    finally:
        await backend.close()
        await delete_topology(RABBITMQ_URL, backend.prefix)


async def test_reconnects_after_the_server_drops_the_connection(rabbit: Backend) -> None:
    name = f"shipyard-test-{secrets.token_hex(4)}"
    broker = rabbit.open(connection_name=name)
    await broker.publish(task(1))
    async with broker.consume(prefetch=1) as deliveries:
        held = await receive(deliveries)
        await asyncio.to_thread(close_connection, name)
        await asyncio.sleep(0.2)  # the client reads the server's connection.close
        with pytest.raises(StoreError):
            await held.ack()  # its channel is gone
        await broker.publish(task(2))  # waits for the reconnection if it has to
        again = await receive(deliveries, within=10)  # the consumer was restored
        assert again.message == held.message
        assert again.redelivered
        await again.ack()
        second = await receive(deliveries, within=10)
        assert second.message == task(2)
        await second.ack()
    assert await broker.depth() == 0


async def test_publishes_in_flight_when_the_connection_drops_are_not_lost(
    rabbit: Backend,
) -> None:
    name = f"shipyard-test-{secrets.token_hex(4)}"
    broker = rabbit.open(connection_name=name)
    await broker.ping()
    confirmed: set[str] = set()
    counter = iter(range(1_000_000))
    stop = asyncio.Event()

    async def publisher() -> None:
        while not stop.is_set():
            message = task(next(counter))
            await broker.publish(message)
            confirmed.add(message.task_id)

    publishers = [asyncio.create_task(publisher()) for _ in range(5)]
    await asyncio.sleep(0.1)
    before = len(confirmed)
    await asyncio.to_thread(close_connection, name)
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*publishers)  # none failed
    assert before > 0 and len(confirmed) > before
    seen: set[str] = set()
    async with broker.consume(prefetch=100) as deliveries:
        while not confirmed <= seen:  # a publish whose confirm was lost may come twice
            delivery = await receive(deliveries)
            seen.add(delivery.message.task_id)
            await delivery.ack()


async def test_a_deleted_queue_is_declared_again(rabbit: Backend) -> None:
    broker = rabbit.open()
    await broker.publish(task(1))
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection, connection.channel() as channel:
        await channel.queue_delete(f"{rabbit.prefix}tasks")
    await broker.publish(task(2))  # returned as unroutable, then sent again
    assert await broker.depth() == 1
