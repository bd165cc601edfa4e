"""The embedded broker's results exchange: topic fan-out inside one process, at most once.

A subscriber gets the results published while it is subscribed whose routing key matches its
pattern; each has a bounded queue on the event loop. One that falls ``max_queued`` results
behind is dropped: its iteration raises ``StoreError`` rather than silently skipping. Results
are not stored: with nobody subscribed they are gone, as on a topic exchange with no queue.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from shipyard.stores._subscription import Subscription
from shipyard.stores.broker.base import ResultEvent, topic_matches

MAX_QUEUED = 10_000


class ResultSubscription(Subscription[ResultEvent]):
    """An async iterator of the results matching one pattern."""

    def __init__(self, pattern: str, max_queued: int) -> None:
        super().__init__("a results subscriber", "results", max_queued)
        self.pattern = pattern

    def offer(self, result: ResultEvent) -> bool:
        return topic_matches(self.pattern, result.routing_key) and super().offer(result)


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
