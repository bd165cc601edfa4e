"""Fixtures for the broker contract: one ``backend`` per broker (SQLite file, RabbitMQ, SQS).

A ``Backend`` opens brokers that share one namespace — the same SQLite file, or the same queue
prefix on the shared RabbitMQ — so a test can play a producer, a worker that dies and another
that takes over. On RabbitMQ each test gets a random prefix, and its queues and exchanges are
deleted afterwards (the server is shared: nothing else is touched). On SQS (moto's server,
``scripts/services.sh``) each test gets a random queue name prefix, and its queues are deleted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import pytest
from aio_pika.exceptions import AMQPError

from shipyard.errors import StoreError
from shipyard.stores.broker.base import Broker
from shipyard.stores.broker.embedded import EmbeddedBroker
from shipyard.stores.broker.rabbitmq import RabbitBroker
from shipyard.stores.broker.rabbitmq_wire import Names
from shipyard.stores.broker.sqs import SqsBroker
from tests.conftest import missing_service

RABBITMQ_URL = os.environ.get("SHIPYARD_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
QUEUES = ("tasks", "other")
"""Every queue a test may use; the RabbitMQ clean-up deletes these (and their retry queues)."""
RETRY_DELAYS_MS = (1, 300, 30_000)
LEASE_S = 0.6  # the embedded broker's: a killed worker's deliveries come back after this
POLL_S = 0.05
SQS_URL = os.environ.get("SHIPYARD_TEST_SQS_ENDPOINT", "http://127.0.0.1:18400")
SQS_ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_ENDPOINT_URL": SQS_URL,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}
"""How a process reaches the test SQS server, the AWS way (moto takes any key pair)."""
SQS_VISIBILITY_S = 2  # a killed worker's deliveries come back after this


def open_sqs(prefix: str, *, visibility_s: int = SQS_VISIBILITY_S, wait_s: int = 1) -> SqsBroker:
    query = f"visibility_s={visibility_s}&wait_s={wait_s}"
    return SqsBroker.from_url(
        f"sqs://{prefix}?{query}", region=SQS_ENV["AWS_REGION"], endpoint=SQS_URL, refresh_s=0.5
    )


def as_broker(broker: EmbeddedBroker | RabbitBroker | SqsBroker) -> Broker:
    """Both backends satisfy the protocol (checked by mypy on this file)."""
    return broker


@dataclass
class Backend:
    """Opens brokers of one backend on one namespace; closes them all at the end."""

    name: str
    url: str
    prefix: str = ""
    opened: list[Broker] = field(default_factory=list)

    def open(self, *, connection_name: str = "shipyard-test") -> Broker:
        broker: Broker
        if self.name == "embedded":
            broker = EmbeddedBroker.from_url(self.url, lease_s=LEASE_S, poll_interval_s=POLL_S)
        elif self.name == "sqs":
            broker = open_sqs(self.prefix)
        else:
            broker = RabbitBroker.from_url(
                self.url,
                prefix=self.prefix,
                reconnect_interval_s=0.2,
                connection_name=connection_name,
            )
        self.opened.append(broker)
        return broker

    def unreachable(self) -> Broker:
        """A broker that cannot work: a file under ``/dev/null``, or AMQP on port 1."""
        if self.name == "embedded":
            return EmbeddedBroker.from_url("sqlite:////dev/null/nowhere/broker.db")
        if self.name == "sqs":
            return SqsBroker.from_url(
                "sqs://nowhere", region="us-east-1", endpoint="http://127.0.0.1:1", timeout_s=3
            )
        return RabbitBroker.from_url("amqp://guest:guest@127.0.0.1:1/", timeout_s=2)

    def child_args(self) -> list[str]:
        """How ``worker_child`` opens the same namespace in another process."""
        return [self.name, self.url, self.prefix, str(LEASE_S)]

    async def close(self) -> None:
        for broker in self.opened:
            await broker.close()


_unreachable: dict[str, str] = {}  # url → why: tried once per session, not once per test


async def rabbit_backend() -> Backend:
    """A backend on the shared RabbitMQ under a fresh prefix; skips (or fails) if it is down."""
    if RABBITMQ_URL in _unreachable:
        missing_service(_unreachable[RABBITMQ_URL])
    backend = Backend("rabbitmq", RABBITMQ_URL, prefix=f"shipyard-test.{secrets.token_hex(6)}.")
    probe = backend.open()
    try:
        await probe.ping()
    except StoreError as exc:
        await backend.close()
        _unreachable[RABBITMQ_URL] = f"RabbitMQ unreachable at {RABBITMQ_URL}: {exc}"
        missing_service(_unreachable[RABBITMQ_URL])
    return backend


async def delete_topology(url: str, prefix: str) -> None:
    names = Names(prefix)
    queues: list[str] = []
    for queue in QUEUES:
        queues += [names.work(queue), names.dead(queue)]
        queues += [names.retry(queue, ms) for ms in RETRY_DELAYS_MS]
    connection = await aio_pika.connect(url)
    try:
        for name in queues:
            with contextlib.suppress(AMQPError):
                async with connection.channel() as channel:
                    await channel.queue_delete(name)
        for exchange in (names.dead_exchange, names.results_exchange):
            with contextlib.suppress(AMQPError):
                async with connection.channel() as channel:
                    await channel.exchange_delete(exchange)
    finally:
        await connection.close()


async def sqs_backend() -> Backend:
    """A backend on the test SQS server under a fresh prefix; skips (or fails) if it is down."""
    if SQS_URL in _unreachable:
        missing_service(_unreachable[SQS_URL])
    for key, value in SQS_ENV.items():  # for the worker child, and botocore's credential chain
        os.environ.setdefault(key, value)
    backend = Backend("sqs", SQS_URL, prefix=f"t{secrets.token_hex(6)}")
    probe = backend.open()
    try:
        await probe.ping()
    except StoreError as exc:
        await backend.close()
        _unreachable[SQS_URL] = f"SQS server unreachable at {SQS_URL}: {exc}"
        missing_service(_unreachable[SQS_URL])
    return backend


async def delete_sqs_queues(prefix: str) -> None:
    """Every queue whose name starts with ``prefix`` (work, dead letters, results)."""
    from aiobotocore.session import get_session

    client = get_session().create_client(
        "sqs", region_name=SQS_ENV["AWS_REGION"], endpoint_url=SQS_URL
    )
    async with client as sqs:
        answer = await sqs.list_queues(QueueNamePrefix=prefix)
        for url in answer.get("QueueUrls", []):
            await sqs.delete_queue(QueueUrl=url)


@pytest.fixture(
    params=[
        "embedded",
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
        pytest.param("sqs", marks=pytest.mark.sqs),
    ]
)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqs":
        sqs = await sqs_backend()
        try:
            yield sqs
        finally:
            await sqs.close()
            await delete_sqs_queues(sqs.prefix)
        return
    if request.param == "embedded":
        embedded = Backend("embedded", f"sqlite:///{tmp_path}/broker.db")
        try:
            yield embedded
        finally:
            await embedded.close()
        return
    rabbit = await rabbit_backend()
    try:
        yield rabbit
    finally:
        await rabbit.close()
        await delete_topology(RABBITMQ_URL, rabbit.prefix)


@pytest.fixture
def broker(backend: Backend) -> Broker:
    return backend.open()
