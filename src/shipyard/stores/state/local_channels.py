"""Publish/subscribe inside one process: each subscriber has a bounded queue on the event loop.

This is the embedded store's pub/sub within a process; ``sqlite_channels`` carries messages
between the processes that share one SQLite file (a server and a worker) and hands them to it.

A subscriber that falls ``max_queued`` messages behind is dropped, as Redis drops a client over
its output buffer limit: its iteration raises ``StoreError`` rather than silently skipping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from shipyard.errors import StoreError
from shipyard.stores._subscription import Subscription

MAX_QUEUED = 10_000


class LocalSubscription(Subscription[bytes]):
    """An async iterator of one channel's messages."""

    def __init__(self, channel: str, max_queued: int, since: int = 0) -> None:
        super().__init__(f"subscriber of {channel!r}", "messages", max_queued)
        self.channel = channel
        self.since = since
        """Messages of other processes are this one's from after this id on."""


class LocalChannels:
    """Channel name → subscriptions, fanned out synchronously on ``publish``."""

    def __init__(self, *, max_queued: int = MAX_QUEUED) -> None:
        self._subscribers: dict[str, set[LocalSubscription]] = {}
        self._max_queued = max_queued

    @property
    def subscribed(self) -> bool:
        return bool(self._subscribers)

    def publish(self, channel: str, message: bytes, *, seq: int = 0) -> int:
        """To the channel's subscribers; with ``seq`` (a message of another process, by its id),
        only to those subscribed before it was published."""
        delivered = 0
        for sub in list(self._subscribers.get(channel, ())):
            if seq and sub.since >= seq:
                continue
            if sub.offer(message):
                delivered += 1
            else:
                self._remove(sub)
        return delivered

    @asynccontextmanager
    async def subscribe(
        self, channel: str, *, since: int = 0
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        sub = LocalSubscription(channel, self._max_queued, since)
        self._subscribers.setdefault(channel, set()).add(sub)
        try:
            yield sub
        finally:
            self._remove(sub)
            sub.end()

    def close(self, error: StoreError | None = None) -> None:
        """End every subscription (their iterations stop after the messages already queued, or
        at once raising ``error``)."""
        for subs in list(self._subscribers.values()):
            for sub in list(subs):
                sub.end(error)
        self._subscribers.clear()

    def _remove(self, sub: LocalSubscription) -> None:
        subs = self._subscribers.get(sub.channel)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[sub.channel]
