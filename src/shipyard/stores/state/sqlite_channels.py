"""Publish/subscribe across the processes that share one SQLite state file.

A published message is a row of ``state_messages`` (one write) and goes at once to the
publishing process's own subscribers. Each process that has subscribers runs one poll loop,
every ``poll_s``, that reads the rows other processes published since its last read and hands
them to its subscribers. The subscription side costs one indexed read per ``poll_s`` per process
(none per run: the control channel is one subscription per process); a message reaches another
process within ``poll_s``. Rows are kept ``MESSAGE_KEEP_S`` (``sqlite_ops.purge``).

At most once, as on Redis: a subscriber gets what is published while it is subscribed; if a read
fails, every subscription of the process ends with the ``StoreError`` (its owner subscribes
again, as after a lost Redis connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from shipyard.errors import StoreError
from shipyard.stores.state import sqlite_ops as ops
from shipyard.stores.state.local_channels import LocalChannels

T = TypeVar("T")
Call = Callable[..., Awaitable[Any]]

POLL_S = 0.1


class FileChannels:
    """Channels of a SQLite file: ``read`` and ``write`` run an ``ops`` function the store's way
    (on the loop or its thread, errors translated)."""

    def __init__(
        self, local: LocalChannels, *, read: Call, write: Call, poll_s: float = POLL_S
    ) -> None:
        self._local = local
        self._read = read
        self._write = write
        self._poll_s = poll_s
        self._origin = uuid.uuid4().hex
        self._polling: asyncio.Task[None] | None = None

    async def publish(self, channel: str, message: bytes) -> int:
        """This process's subscribers now; the others' at their next poll. How many of this
        process's subscribers there were (the others' are not counted)."""
        await self._write("publish", ops.publish, channel, message, self._origin)
        return self._local.publish(channel, message)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        since = await self._read("subscribe", ops.last_message)
        async with self._local.subscribe(channel, since=since) as messages:
            if self._polling is None or self._polling.done():
                self._polling = asyncio.create_task(self._poll(since), name="shipyard-channels")
            yield messages

    async def close(self) -> None:
        if self._polling is not None:
            self._polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._polling
            self._polling = None

    async def _poll(self, after: int) -> None:
        """Until this process has no subscriber left."""
        while self._local.subscribed:
            await asyncio.sleep(self._poll_s)
            try:
                rows = await self._read("subscribe", ops.messages_after, after)
            except StoreError as exc:
                self._local.close(exc)
                return
            for seq, channel, message, origin in rows:
                after = seq
                if origin != self._origin:
                    self._local.publish(channel, message, seq=seq)
