"""The RabbitMQ broker's consumers and deliveries (see ``rabbitmq`` for the guarantees)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

from shipyard.stores.broker import rabbitmq_wire as wire
from shipyard.stores.broker.base import Delivery, TaskMessage, check_delay


@dataclass(frozen=True, slots=True)
class Settling:
    """What a delivery needs from its broker to settle."""

    names: wire.Names
    translate: Callable[[str], AbstractAsyncContextManager[None]]
    """One operation: bounded in time, driver errors raised as ``StoreError``."""
    send: Callable[[str, str, aio_pika.Message], Awaitable[None]]
    """Publish to ``(exchange, routing_key)`` and wait for the confirm."""
    declare_retry: Callable[[str, int], Awaitable[None]]
    """Declare the delay queue of ``(queue, delay_ms)``."""


class RabbitDelivery:
    """A delivery on the consumer's channel; settling it needs that channel still open."""

    __slots__ = ("_incoming", "_queue", "_settled", "_settling", "message")

    def __init__(
        self,
        settling: Settling,
        queue: str,
        incoming: AbstractIncomingMessage,
        message: TaskMessage,
    ) -> None:
        self._settling = settling
        self._queue = queue
        self._incoming = incoming
        self._settled = False
        self.message = message

    def __repr__(self) -> str:
        return f"<Delivery {self.message.task_id} attempt={self.message.attempt}>"

    @property
    def redelivered(self) -> bool:
        return bool(self._incoming.redelivered)

    async def ack(self) -> None:
        async with self._settle("ack"):
            await self._incoming.ack()

    async def nack(self, *, requeue: bool) -> None:
        async with self._settle("nack"):
            await self._incoming.nack(requeue=requeue)

    async def retry(self, delay_s: float) -> None:
        delay_ms = max(1, round(check_delay(delay_s) * 1000))
        again = wire.to_amqp(_next_attempt(self.message))
        async with self._settle("retry"):
            await self._settling.declare_retry(self._queue, delay_ms)
            await self._settling.send("", self._settling.names.retry(self._queue, delay_ms), again)
            await self._incoming.ack()

    async def dead(self, reason: str) -> None:
        names = self._settling.names
        letter = wire.to_amqp(self.message, dead_reason=str(reason))
        async with self._settle("dead"):
            await self._settling.send(names.dead_exchange, names.work(self._queue), letter)
            await self._incoming.ack()

    @asynccontextmanager
    async def _settle(self, operation: str) -> AsyncIterator[None]:
        if self._settled:
            raise RuntimeError(f"{self!r} is already settled")
        self._settled = True
        async with self._settling.translate(operation):
            self._incoming.channel  # noqa: B018 -- raises if the channel is gone: nothing to send
            yield


def _next_attempt(message: TaskMessage) -> TaskMessage:
    return TaskMessage(
        task_id=message.task_id,
        tenant_id=message.tenant_id,
        agent=message.agent,
        body=message.body,
        priority=message.priority,
        attempt=message.attempt + 1,
        headers=message.headers,
    )


class Consumer:
    """Deliveries of one ``consume``: RabbitMQ pushes at most ``prefetch`` unacked ones."""

    def __init__(self, settling: Settling, queue: str) -> None:
        self._settling = settling
        self._queue = queue
        self._inbox: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        self._ended = False

    async def on_message(self, incoming: AbstractIncomingMessage) -> None:
        if not self._ended:
            self._inbox.put_nowait(incoming)

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self._inbox.put_nowait(None)

    def __aiter__(self) -> Consumer:
        return self

    async def __anext__(self) -> Delivery:
        while True:
            incoming = await self._inbox.get()
            if incoming is None:
                self._inbox.put_nowait(None)  # stay ended for the next call
                raise StopAsyncIteration
            try:
                incoming.channel  # noqa: B018
            except ChannelInvalidStateError:
                continue  # received before a reconnection: RabbitMQ delivers it again
            try:
                message = wire.from_amqp(incoming)
            except (ValueError, TypeError):
                with contextlib.suppress(AMQPError, ChannelInvalidStateError):
                    await incoming.reject(requeue=False)  # not a task: to the dead letters
                continue
            return RabbitDelivery(self._settling, self._queue, incoming, message)
