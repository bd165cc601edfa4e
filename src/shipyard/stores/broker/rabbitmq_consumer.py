"""The RabbitMQ broker's consumers and deliveries (see ``rabbitmq`` for the guarantees)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

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


class Acks:
    """The acks of one channel, coalesced per loop turn. The finished deliveries at the head of
    the channel's unsettled ones go in one ``basic.ack`` with ``multiple``; one finished behind
    an unfinished one goes alone, so a long task never holds back the others' prefetch slots.
    Every delivery of the channel is registered as it arrives (in delivery-tag order), and one
    settled otherwise (a nack, a reject) is forgotten only once its own frame is out: a
    ``multiple`` ack never covers a delivery that is not finished. Measured, A/B, one worker
    draining 4,000 tasks: 782-797 -> 722-745 µs of CPU per task; RabbitMQ handles fewer frames
    too."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel  # aiormq's channel under the consumer's
        self._unsettled: dict[int, asyncio.Future[None] | None] = {}  # by tag, in tag order
        self._lock = asyncio.Lock()
        self._flushing = False

    def received(self, tag: int) -> None:
        self._unsettled[tag] = None

    def forget(self, tag: int) -> None:
        self._unsettled.pop(tag, None)

    def ack(self, tag: int) -> asyncio.Future[None]:
        """Done once the ack that covers ``tag`` is handed to the connection (or failed)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._unsettled[tag] = done
        if not self._flushing:
            self._flushing = True
            loop.call_soon(lambda: asyncio.ensure_future(self._flush()))
        return done

    async def _flush(self) -> None:
        async with self._lock:  # frames leave in the order they were decided
            self._flushing = False
            head: list[asyncio.Future[None]] = []
            head_end = 0
            alone: list[tuple[int, asyncio.Future[None]]] = []
            at_head = True
            for tag, done in self._unsettled.items():
                if done is None:
                    at_head = False
                elif at_head:
                    head.append(done)
                    head_end = tag
                else:
                    alone.append((tag, done))
            for tag in [t for t, d in self._unsettled.items() if d is not None]:
                del self._unsettled[tag]  # settled, whatever the frames do: a closed channel
            if head:
                await self._send(head_end, head, multiple=True)
            for tag, done in alone:
                await self._send(tag, [done], multiple=False)

    async def _send(self, tag: int, waiting: list[asyncio.Future[None]], *, multiple: bool) -> None:
        try:
            await self.channel.basic_ack(tag, multiple=multiple)
        except Exception as exc:
            for done in waiting:
                if not done.done():
                    done.set_exception(exc)
        else:
            for done in waiting:
                if not done.done():
                    done.set_result(None)


class RabbitDelivery:
    """A delivery on the consumer's channel; settling it needs that channel still open."""

    __slots__ = ("_acks", "_incoming", "_queue", "_settled", "_settling", "message")

    def __init__(
        self,
        settling: Settling,
        queue: str,
        incoming: AbstractIncomingMessage,
        message: TaskMessage,
        acks: Acks,
    ) -> None:
        self._settling = settling
        self._queue = queue
        self._incoming = incoming
        self._acks = acks
        self._settled = False
        self.message = message

    def __repr__(self) -> str:
        return f"<Delivery {self.message.task_id} attempt={self.message.attempt}>"

    @property
    def redelivered(self) -> bool:
        return bool(self._incoming.redelivered)

    async def ack(self) -> None:
        async with self._settle("ack"):
            await self._acks.ack(self._incoming.delivery_tag or 0)

    async def nack(self, *, requeue: bool) -> None:
        async with self._settle("nack"):
            try:
                await self._incoming.nack(requeue=requeue)
            finally:
                self._acks.forget(self._incoming.delivery_tag or 0)

    async def retry(self, delay_s: float) -> None:
        delay_ms = max(1, round(check_delay(delay_s) * 1000))
        again = wire.to_amqp(self.message.next_attempt())
        async with self._settle("retry"):
            await self._settling.declare_retry(self._queue, delay_ms)
            await self._settling.send("", self._settling.names.retry(self._queue, delay_ms), again)
            await self._acks.ack(self._incoming.delivery_tag or 0)

    async def dead(self, reason: str) -> None:
        names = self._settling.names
        letter = wire.to_amqp(self.message, dead_reason=str(reason))
        async with self._settle("dead"):
            await self._settling.send(names.dead_exchange, names.work(self._queue), letter)
            await self._acks.ack(self._incoming.delivery_tag or 0)

    @asynccontextmanager
    async def _settle(self, operation: str) -> AsyncIterator[None]:
        if self._settled:
            raise RuntimeError(f"{self!r} is already settled")
        self._settled = True
        async with self._settling.translate(operation):
            self._incoming.channel  # noqa: B018 -- raises if the channel is gone: nothing to send
            yield


class Consumer:
    """Deliveries of one ``consume``: RabbitMQ pushes at most ``prefetch`` unacked ones."""

    def __init__(self, settling: Settling, queue: str) -> None:
        self._settling = settling
        self._queue = queue
        self._inbox: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        self._ended = False
        self._acks: Acks | None = None

    async def on_message(self, incoming: AbstractIncomingMessage) -> None:
        if self._ended:
            return
        with contextlib.suppress(ChannelInvalidStateError):  # gone: RabbitMQ delivers it again
            self._acks_of(incoming).received(incoming.delivery_tag or 0)
        self._inbox.put_nowait(incoming)

    def _acks_of(self, incoming: AbstractIncomingMessage) -> Acks:
        """The acks of the delivery's channel (a new one after a reconnection)."""
        channel = incoming.channel
        if self._acks is None or self._acks.channel is not channel:
            self._acks = Acks(channel)
        return self._acks

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
                acks = self._acks_of(incoming)
            except ChannelInvalidStateError:
                continue  # received before a reconnection: RabbitMQ delivers it again
            try:
                message = wire.from_amqp(incoming)
            except (ValueError, TypeError):
                with contextlib.suppress(AMQPError, ChannelInvalidStateError):
                    await incoming.reject(requeue=False)  # not a task: to the dead letters
                acks.forget(incoming.delivery_tag or 0)
                continue
            return RabbitDelivery(self._settling, self._queue, incoming, message, acks)
