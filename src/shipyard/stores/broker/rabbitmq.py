"""``RabbitBroker``: the broker on RabbitMQ (aio-pika), shared by every server and worker.

Layout and wire format are in ``rabbitmq_wire``, consumers and deliveries in
``rabbitmq_consumer``. Guarantees:

- ``publish`` sends a persistent message on a channel with publisher confirms and returns when
  RabbitMQ has confirmed it (stored to disk, as the queues are durable). It is ``mandatory``:
  a message that no queue took raises instead of vanishing.
- Consumers use manual acks; each ``consume`` has its own channel whose QoS (``prefetch``)
  bounds the unacked deliveries. Closing the channel or losing the connection hands every
  unacked delivery back to the queue.
- ``retry`` publishes a copy (``attempt + 1``) to a per-delay TTL queue that dead-letters back
  into the work queue, then acks the original; ``dead`` publishes a copy with the reason to the
  dead-letter exchange, then acks. A crash between the two steps duplicates, never loses.

Reconnection: the connection is aio-pika's robust connection, which reconnects every
``reconnect_interval_s`` and restores channels, QoS, queues, bindings and consumers. A publish
interrupted by a lost connection waits for it to come back and sends again, for up to
``timeout_s`` — so a message may be queued twice (at least once). A delivery received before
the connection dropped can no longer be settled (``StoreError``): RabbitMQ redelivers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    ExchangeType,
)
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError, PublishError
from yarl import URL

from shipyard.errors import ConfigError, StoreError, StoreRejected
from shipyard.stores.broker import rabbitmq_wire as wire
from shipyard.stores.broker.base import (
    DEFAULT_QUEUE,
    DeadLetter,
    Delivery,
    ResultEvent,
    TaskMessage,
    check_prefetch,
    check_queue,
)
from shipyard.stores.broker.local_results import MAX_QUEUED, ResultSubscription
from shipyard.stores.broker.rabbitmq_consumer import Consumer, Settling

__all__ = ["RabbitBroker"]


_SCHEMES = ("amqp", "amqps")
TIMEOUT_S = 10.0
RECONNECT_INTERVAL_S = 1.0
_LOST = (ConnectionError, ChannelInvalidStateError)  # the connection or channel went away
_REJECTED = (aiormq.exceptions.ChannelPreconditionFailed, aiormq.exceptions.ChannelAccessRefused)


class RabbitBroker:
    """The ``Broker`` on RabbitMQ; build it with ``from_url``. Connects on first use."""

    def __init__(
        self,
        url: URL,
        *,
        prefix: str,
        timeout_s: float,
        reconnect_interval_s: float,
        connection_name: str,
    ) -> None:
        self._url = url
        self._label = f"{url.host}:{url.port or 5672}{url.path}"
        self._names = wire.Names(prefix)
        self._timeout_s = timeout_s
        self._reconnect_interval_s = reconnect_interval_s
        self.connection_name = connection_name
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None
        self._results: AbstractExchange | None = None
        self._queues: set[str] = set()  # work queues whose topology is declared
        self._connect_lock = asyncio.Lock()
        self._declare_lock = asyncio.Lock()
        self._consumers: set[Consumer] = set()
        self._settling = Settling(self._names, self._translate, self._send, self._declare_retry)
        self._subscriptions: set[ResultSubscription] = set()
        self._closed = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "shipyard.",
        timeout_s: float = TIMEOUT_S,
        reconnect_interval_s: float = RECONNECT_INTERVAL_S,
        connection_name: str = "shipyard",
    ) -> RabbitBroker:
        """``amqp://user:password@host:port/vhost`` or ``amqps://`` (TLS). Every queue and
        exchange is named under ``prefix``; ``connection_name`` shows in RabbitMQ's tools."""
        try:
            parsed = URL(url)
        except ValueError as e:
            raise ConfigError(f"invalid RabbitMQ URL: {e}") from e
        if parsed.scheme not in _SCHEMES:
            supported = ", ".join(f"{s}://" for s in _SCHEMES)
            raise ConfigError(f"unsupported broker URL scheme {parsed.scheme!r}: {supported}")
        if not parsed.host:
            raise ConfigError("a RabbitMQ URL needs a host: amqp://user:password@host:5672/")
        return cls(
            parsed,
            prefix=prefix,
            timeout_s=timeout_s,
            reconnect_interval_s=reconnect_interval_s,
            connection_name=connection_name,
        )

    @property
    def prefix(self) -> str:
        return self._names.prefix

    # -- lifecycle ------------------------------------------------------------------------------

    async def ping(self) -> None:
        async with self._translate("ping"):
            await self._channel()

    async def close(self) -> None:
        """End consumers (their unacked deliveries go back to the queues) and subscriptions,
        and close the connection; idempotent."""
        if self._closed:
            return
        self._closed = True
        for consumer in list(self._consumers):
            consumer.end()
        for subscription in list(self._subscriptions):
            subscription.end()
        if self._connection is not None:
            with contextlib.suppress(AMQPError, OSError, RuntimeError):
                await self._connection.close()

    # -- tasks ----------------------------------------------------------------------------------

    async def publish(self, message: TaskMessage, *, queue: str = DEFAULT_QUEUE) -> None:
        check_queue(queue)
        async with self._translate("publish"):
            await self._declare(queue)
            try:
                await self._send("", self._names.work(queue), wire.to_amqp(message))
            except PublishError:  # returned: the queue was deleted under us; declare it again
                self._queues.discard(queue)
                await self._declare(queue)
                await self._send("", self._names.work(queue), wire.to_amqp(message))

    def consume(
        self, queue: str = DEFAULT_QUEUE, *, prefetch: int
    ) -> AbstractAsyncContextManager[AsyncIterator[Delivery]]:
        return self._consume(check_queue(queue), check_prefetch(prefetch))

    @asynccontextmanager
    async def _consume(self, queue: str, prefetch: int) -> AsyncIterator[AsyncIterator[Delivery]]:
        async with self._translate("consume"):
            await self._declare(queue)
            connection = await self._connect()
            channel = await connection.channel(publisher_confirms=False)
        consumer = Consumer(self._settling, queue)
        self._consumers.add(consumer)
        try:
            async with self._translate("consume"):
                await channel.set_qos(prefetch_count=prefetch)
                amqp_queue = await channel.declare_queue(
                    self._names.work(queue),
                    durable=True,
                    arguments=self._names.work_arguments(queue),
                )
                await amqp_queue.consume(consumer.on_message)
            yield consumer
        finally:
            consumer.end()
            self._consumers.discard(consumer)
            with contextlib.suppress(AMQPError, OSError, RuntimeError):
                await channel.close()  # unacked deliveries go back to the queue

    # -- results --------------------------------------------------------------------------------

    async def publish_result(self, event: bytes, *, routing_key: str) -> None:
        if not isinstance(event, bytes):
            raise TypeError(f"a result event is bytes, not {type(event).__name__}")
        message = aio_pika.Message(
            event,
            content_type="application/cloudevents+json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        async with self._translate("publish_result"):
            await self._results_exchange()
            await self._send(self._names.results_exchange, routing_key, message)

    def subscribe_results(
        self, pattern: str = "#"
    ) -> AbstractAsyncContextManager[AsyncIterator[ResultEvent]]:
        return self._subscribe_results(pattern)

    @asynccontextmanager
    async def _subscribe_results(self, pattern: str) -> AsyncIterator[AsyncIterator[ResultEvent]]:
        subscription = ResultSubscription(pattern, MAX_QUEUED)

        async def on_message(incoming: AbstractIncomingMessage) -> None:
            subscription.offer(ResultEvent(incoming.routing_key or "", incoming.body))

        async with self._translate("subscribe_results"):
            exchange = await self._results_exchange()
            channel = await (await self._connect()).channel(publisher_confirms=False)
        self._subscriptions.add(subscription)
        try:
            async with self._translate("subscribe_results"):
                name = f"{self.prefix}results/{uuid.uuid4().hex}"
                amqp_queue = await channel.declare_queue(name, exclusive=True, auto_delete=True)
                await amqp_queue.bind(exchange, pattern)
                await amqp_queue.consume(on_message, no_ack=True)
            yield subscription
        finally:
            subscription.end()
            self._subscriptions.discard(subscription)
            with contextlib.suppress(AMQPError, OSError, RuntimeError):
                await channel.close()  # the exclusive queue goes with it

    # -- stats ----------------------------------------------------------------------------------

    async def depth(self, queue: str = DEFAULT_QUEUE) -> int:
        check_queue(queue)
        async with self._translate("depth"):
            await self._declare(queue)
            channel = await (await self._channel()).get_underlay_channel()
            declared = await channel.queue_declare(
                self._names.work(queue),
                durable=True,
                arguments=self._names.work_arguments(queue),
            )
        return int(declared.message_count or 0)

    async def dead_letters(
        self, queue: str = DEFAULT_QUEUE, *, limit: int = 100
    ) -> list[DeadLetter]:
        """Read without removing: get the messages unacked on a channel of its own, then close
        it, which puts them back where they were."""
        check_queue(queue)
        letters: list[DeadLetter] = []
        async with self._translate("dead_letters"):
            await self._declare(queue)
            channel = await (await self._connect()).channel(publisher_confirms=False)
            try:
                amqp_queue = await channel.declare_queue(
                    self._names.dead(queue), durable=True, robust=False
                )
                while len(letters) < limit:
                    incoming = await amqp_queue.get(no_ack=False, fail=False)
                    if incoming is None:
                        break
                    with contextlib.suppress(ValueError, TypeError):  # not a task message
                        letters.append(
                            DeadLetter(wire.from_amqp(incoming), wire.dead_reason(incoming))
                        )
            finally:
                await channel.close()
        return letters

    # -- private: connection, topology, publishing ------------------------------------------------

    async def _connect(self) -> AbstractRobustConnection:
        if self._closed:
            raise StoreError("the broker is closed")
        if self._connection is None:
            async with self._connect_lock:
                if self._connection is None:
                    self._connection = await self._open_connection()
        return self._connection

    async def _open_connection(self) -> AbstractRobustConnection:
        url = aio_pika.connection.make_url(
            self._url, reconnect_interval=self._reconnect_interval_s, fail_fast="1"
        )
        properties = {"connection_name": self.connection_name}
        connection = aio_pika.RobustConnection(url, client_properties=properties)
        try:
            await connection.connect(timeout=self._timeout_s)
            self._publisher = await connection.channel(on_return_raises=True)
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        return connection

    async def _channel(self) -> AbstractRobustChannel:
        """The publishing channel (confirms on), once connected."""
        await self._connect()
        assert self._publisher is not None
        return self._publisher

    async def _declare(self, queue: str) -> None:
        """The work queue, its dead-letter queue and the dead-letter exchange, once per queue."""
        if queue in self._queues:
            return
        channel = await self._channel()
        async with self._declare_lock:
            if queue in self._queues:
                return
            dead = await channel.declare_exchange(
                self._names.dead_exchange, ExchangeType.DIRECT, durable=True
            )
            dead_queue = await channel.declare_queue(self._names.dead(queue), durable=True)
            await dead_queue.bind(dead, self._names.work(queue))
            await channel.declare_queue(
                self._names.work(queue), durable=True, arguments=self._names.work_arguments(queue)
            )
            self._queues.add(queue)

    async def _declare_retry(self, queue: str, delay_ms: int) -> None:
        """The delay queue of ``queue`` for ``delay_ms``; declaring it renews its x-expires."""
        channel = await self._channel()
        await channel.declare_queue(
            self._names.retry(queue, delay_ms),
            durable=True,
            arguments=self._names.retry_arguments(queue, delay_ms),
            robust=False,
        )

    async def _results_exchange(self) -> AbstractExchange:
        if self._results is None:
            channel = await self._channel()
            self._results = await channel.declare_exchange(
                self._names.results_exchange, ExchangeType.TOPIC, durable=True
            )
        return self._results

    async def _send(self, exchange: str, routing_key: str, message: aio_pika.Message) -> None:
        """Publish and wait for the confirm; if the connection drops meanwhile, wait for it to be
        back and publish again, for up to ``timeout_s`` in all. A task (to the default exchange)
        is ``mandatory``: unroutable, it raises instead of vanishing."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        pause = 0.01
        while True:
            channel = await self._channel()
            target = await channel.get_exchange(exchange, ensure=False)
            try:
                await target.publish(
                    message,
                    routing_key,
                    mandatory=exchange == "",
                    timeout=max(0.01, deadline - loop.time()),
                )
                return
            except _LOST:
                if loop.time() >= deadline:
                    raise
            # Pause first: until the connection has noticed its loss (on this loop), ``ready``
            # returns at once and the publish fails at once — a loop that would never yield.
            pause = min(2 * pause, 0.5)
            await asyncio.sleep(pause)
            async with asyncio.timeout_at(deadline):
                await channel.ready()

    @asynccontextmanager
    async def _translate(self, operation: str) -> AsyncIterator[None]:
        """One operation, bounded by ``timeout_s`` (a robust connection otherwise waits for the
        server forever); driver and network failures leave as ``StoreError`` (the driver's on
        ``__cause__``)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                yield
        except StoreError:
            raise
        except _REJECTED as e:
            message = f"broker (rabbitmq {self._label}) refused {operation}: {_reason(e)}"
            raise StoreRejected(message, details={"operation": operation}) from e
        except PublishError as e:
            message = f"broker (rabbitmq {self._label}) {operation}: no queue took the message"
            raise StoreError(message, details={"operation": operation}) from e
        except (AMQPError, OSError, ChannelInvalidStateError) as e:
            message = f"broker (rabbitmq {self._label}) {operation} failed: {_reason(e)}"
            raise StoreError(message, details={"operation": operation}) from e


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
