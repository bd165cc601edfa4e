"""Publish/subscribe inside one process: each subscriber has a bounded queue on the event loop.

This is the embedded store's pub/sub. It reaches subscribers of this process only — two
processes sharing one SQLite file (a server and a worker) do not see each other's messages.

A subscriber that falls ``max_queued`` messages behind is dropped, as Redis drops a client over
its output buffer limit: its iteration raises ``StoreError`` rather than silently skipping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from shipyard.stores._subscription import Subscription

MAX_QUEUED = 10_000


class LocalSubscription(Subscription[bytes]):
    """An async iterator of one channel's messages."""

    def __init__(self, channel: str, max_queued: int) -> None:
        super().__init__(f"subscriber of {channel!r}", "messages", max_queued)
        self.channel = channel


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
