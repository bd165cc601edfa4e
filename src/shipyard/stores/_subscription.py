"""A subscriber's bounded queue on the event loop, shared by every in-process fan-out.

A subscriber that falls ``max_queued`` items behind is dropped, as Redis drops a client over its
output buffer limit: its iteration raises ``StoreError`` rather than silently skipping items.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

from shipyard.errors import StoreError

T = TypeVar("T")


class _End:
    def __init__(self, error: StoreError | None) -> None:
        self.error = error


class Subscription(Generic[T]):
    """An async iterator of what is ``offer``-ed to it, until ``end``."""

    def __init__(self, who: str, unit: str, max_queued: int) -> None:
        self._who, self._unit = who, unit
        self._queue: asyncio.Queue[T | _End] = asyncio.Queue(max_queued + 1)
        self._max_queued = max_queued
        self._ended: _End | None = None

    def offer(self, item: T) -> bool:
        """Queue an item; False (and the subscription ends) if the subscriber is too slow."""
        if self._ended is not None:
            return False
        if self._queue.qsize() >= self._max_queued:
            overflow = StoreError(
                f"{self._who} fell {self._max_queued} {self._unit} behind",
                details={"operation": "subscribe"},
            )
            self.end(overflow)
            return False
        self._queue.put_nowait(item)
        return True

    def end(self, error: StoreError | None = None) -> None:
        """Stop the iteration after the queued items (at once, with ``error``, if given)."""
        if self._ended is not None:
            return
        self._ended = _End(error)
        if error is not None:
            while not self._queue.empty():
                self._queue.get_nowait()
        self._queue.put_nowait(self._ended)

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # stay ended for the next call
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item
