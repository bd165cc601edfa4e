"""One Redis subscription: a ``PubSub`` connection of its own, as an async iterator of messages.

redis-py reconnects and resubscribes by itself after a connection error (within its retries);
what was published meanwhile is lost, as pub/sub is at most once. Closing — by leaving the
``subscribe`` block or by closing the store — ends the iteration, including one waiting in
another task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from shipyard.errors import StoreError

CONFIRM_TIMEOUT_S = 5.0

Translate = Callable[[str], AbstractContextManager[None]]


class RedisSubscription:
    def __init__(self, pubsub: PubSub, translate: Translate) -> None:
        self._pubsub = pubsub
        self._translate = translate
        self._closed = False
        self._reader: asyncio.Task[Any] | None = None  # the task waiting for a message
        self._interrupted: asyncio.Task[Any] | None = None

    async def open(self, channel: str) -> None:
        """Subscribe and wait for the server's confirmation: from then on, every publication on
        ``channel`` reaches this subscription."""
        try:
            with self._translate("subscribe"):
                await self._pubsub.subscribe(channel)
                await self._expect("subscribe")
        except BaseException:
            await self.close()
            raise

    def __aiter__(self) -> RedisSubscription:
        return self

    async def __anext__(self) -> bytes:
        while not self._closed:
            self._reader = asyncio.current_task()
            try:
                with self._translate("subscribe"):
                    message = await self._pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                if self._interrupted is self._reader and self._swallow_interruption():
                    break
                raise
            except StoreError:
                if self._closed:
                    break
                raise
            finally:
                self._reader = None
            if message is not None and message["type"] == "message":
                data: bytes = message["data"]
                return data
        raise StopAsyncIteration

    async def close(self) -> None:
        """Unsubscribe — waiting for the confirmation, so that a publication right after no
        longer counts this subscriber — and give the connection back. A task waiting for a
        message is interrupted instead (the driver would otherwise reconnect under it and wait
        forever), and its iteration ends. Idempotent."""
        if self._closed:
            return
        self._closed = True
        connection = self._pubsub.connection
        reader = self._reader
        try:
            if reader is not None and reader is not asyncio.current_task():
                self._interrupted = reader
                reader.cancel()
            elif connection is not None and connection.is_connected:
                await self._pubsub.unsubscribe()
                await self._expect("unsubscribe")
        except (RedisError, OSError, StoreError):
            pass  # the connection is broken, and the subscription gone with it
        finally:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    def _swallow_interruption(self) -> bool:
        """Whether the cancellation came from ``close`` alone (none from elsewhere pending)."""
        task = asyncio.current_task()
        return task is not None and task.uncancel() == 0

    async def _expect(self, kind: str) -> None:
        while True:
            message = await self._pubsub.get_message(timeout=CONFIRM_TIMEOUT_S)
            if message is None:
                raise StoreError(f"Redis did not confirm the {kind}", details={"operation": kind})
            if message["type"] == kind:
                return
