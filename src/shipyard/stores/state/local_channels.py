"""Publish/subscribe inside one process: each subscriber has a bounded queue on the event loop.

This is the embedded store's pub/sub. It reaches subscribers of this process only — two
processes sharing one SQLite file (a server and a worker) do not see each other's messages.

A subscriber that falls ``max_queued`` messages behind is dropped, as Redis drops a client over
its output buffer limit: its iteration raises ``StoreError`` rather than silently skipping.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from shipyard.errors import StoreError

MAX_QUEUED = 10_000


class _End:
    def __init__(self, error: StoreError | None) -> None:
        self.error = error


class LocalSubscription:
    """An async iterator of one channel's messages."""

    def __init__(self, channel: str, max_queued: int) -> None:
        self.channel = channel
        self._queue: asyncio.Queue[bytes | _End] = asyncio.Queue(max_queued + 1)
        self._max_queued = max_queued
        self._ended: _End | None = None

    def offer(self, message: bytes) -> bool:
        """Queue a message; False (and the subscription ends) if the subscriber is too slow."""
        if self._ended is not None:
            return False
        if self._queue.qsize() >= self._max_queued:
            overflow = StoreError(
                f"subscriber of {self.channel!r} fell {self._max_queued} messages behind",
                details={"operation": "subscribe"},
            )
            self.end(overflow)
            return False
        self._queue.put_nowait(message)
        return True

    def end(self, error: StoreError | None = None) -> None:
        """Stop the iteration after the queued messages (at once, with ``error``, if given)."""
        if self._ended is not None:
            return
        self._ended = _End(error)
        if error is not None:
            while not self._queue.empty():
                self._queue.get_nowait()
        self._queue.put_nowait(self._ended)

    def __aiter__(self) -> LocalSubscription:
        return self

    async def __anext__(self) -> bytes:
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # stay ended for the next call
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item


class LocalChannels:
    """Channel name → subscriptions, fanned out synchronously on ``publish``."""

    def __init__(self, *, max_queued: int = MAX_QUEUED) -> None:
        self._subscribers: dict[str, set[LocalSubscription]] = {}
        self._max_queued = max_queued

    def publish(self, channel: str, message: bytes) -> int:
        delivered = 0
        for sub in list(self._subscribers.get(channel, ())):
            if sub.offer(message):
                delivered += 1
            else:
                self._remove(sub)
        return delivered

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        sub = LocalSubscription(channel, self._max_queued)
        self._subscribers.setdefault(channel, set()).add(sub)
        try:
            yield sub
        finally:
            self._remove(sub)
            sub.end()

    def close(self) -> None:
        """End every subscription (their iterations stop after the messages already queued)."""
        for subs in list(self._subscribers.values()):
            for sub in list(subs):
                sub.end()
        self._subscribers.clear()

    def _remove(self, sub: LocalSubscription) -> None:
        subs = self._subscribers.get(sub.channel)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[sub.channel]
