"""The embedded broker's results exchange: topic fan-out inside one process, at most once.

A subscriber gets the results published while it is subscribed whose routing key matches its
pattern; each has a bounded queue on the event loop. One that falls ``max_queued`` results
behind is dropped: its iteration raises ``StoreError`` rather than silently skipping. Results
are not stored: with nobody subscribed they are gone, as on a topic exchange with no queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from shipyard.errors import StoreError
from shipyard.stores.broker.base import ResultEvent, topic_matches

MAX_QUEUED = 10_000


class _End:
    def __init__(self, error: StoreError | None) -> None:
        self.error = error


class ResultSubscription:
    """An async iterator of the results matching one pattern."""

    def __init__(self, pattern: str, max_queued: int) -> None:
        self.pattern = pattern
        self._queue: asyncio.Queue[ResultEvent | _End] = asyncio.Queue(max_queued + 1)
        self._max_queued = max_queued
        self._ended = False

    def offer(self, result: ResultEvent) -> None:
        if self._ended or not topic_matches(self.pattern, result.routing_key):
            return
        if self._queue.qsize() >= self._max_queued:
            self.end(StoreError(f"a results subscriber fell {self._max_queued} results behind"))
            return
        self._queue.put_nowait(result)

    def end(self, error: StoreError | None = None) -> None:
        """Stop after the queued results (at once, with ``error``, if given)."""
        if self._ended:
            return
        self._ended = True
        if error is not None:
            while not self._queue.empty():
                self._queue.get_nowait()
        self._queue.put_nowait(_End(error))

    def __aiter__(self) -> ResultSubscription:
        return self

    async def __anext__(self) -> ResultEvent:
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # stay ended for the next call
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item


class LocalResults:
    def __init__(self, *, max_queued: int = MAX_QUEUED) -> None:
        self._subscriptions: set[ResultSubscription] = set()
        self._max_queued = max_queued

    def publish(self, result: ResultEvent) -> None:
        for subscription in list(self._subscriptions):
            subscription.offer(result)

    @asynccontextmanager
    async def subscribe(self, pattern: str) -> AsyncIterator[AsyncIterator[ResultEvent]]:
        subscription = ResultSubscription(pattern, self._max_queued)
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)
            subscription.end()

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.end()
        self._subscriptions.clear()
