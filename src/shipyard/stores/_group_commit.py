"""Group commit: the writes of one process queue on the loop; while one transaction runs, the
next ones gather, and they then run together in one transaction — one commit (one fsync, one
lock acquisition) for many writes. The record store's writes and the embedded broker's publishes
go through it.

If the shared transaction fails, each write runs again in a transaction of its own, so one
write's error (a constraint, bad data, a deadlock) is its alone and the others still commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, TypeVar

C = TypeVar("C")
T = TypeVar("T")

_Entry = tuple[Callable[[C], Awaitable[Any]], asyncio.Future[Any]]

MAX_BATCH = 256
"""Writes in one shared transaction at most."""


class GroupCommit(Generic[C]):
    def __init__(self, begin: Callable[[], AbstractAsyncContextManager[C]]) -> None:
        """``begin`` opens a write transaction (committed when its context exits without an
        error) and gives what the writes run on; one runs at a time (one drainer)."""
        self._begin = begin
        self._pending: list[_Entry[C]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[C], Awaitable[T]]) -> T:
        """``work``'s result once its transaction has committed (or its error)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((work, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await asyncio.shield(future)

    async def idle(self) -> None:
        """Until every write queued so far has its answer (for a clean close)."""
        while self._drainer is not None and not self._drainer.done():
            await asyncio.wait({self._drainer})

    async def _drain(self) -> None:
        batch: list[_Entry[C]] = []
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    results = await self._together(batch)
                except Exception as exc:
                    if len(batch) == 1:
                        _settle(batch[0][1], error=exc)
                    else:
                        await self._one_by_one(batch)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    _settle(future, result)
        except BaseException as exc:  # cancelled (the loop is closing): nobody waits forever
            for _, future in [*batch, *self._pending]:
                _settle(future, error=exc)
            raise

    async def _together(self, batch: list[_Entry[C]]) -> list[Any]:
        async with self._begin() as conn:
            return [await work(conn) for work, _ in batch]

    async def _one_by_one(self, batch: list[_Entry[C]]) -> None:
        for work, future in batch:
            try:
                async with self._begin() as conn:
                    result = await work(conn)
            except Exception as exc:
                _settle(future, error=exc)
            else:
                _settle(future, result)


def _settle(
    future: asyncio.Future[Any], result: Any = None, error: BaseException | None = None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
