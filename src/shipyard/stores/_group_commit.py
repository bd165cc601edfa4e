"""Group commit: the writes of one process queue on the loop; while one transaction runs, the
next ones gather, and they then run together in one transaction — one commit (one fsync, one
lock acquisition) for many writes. The record store's writes and the embedded broker's publishes
go through it.

If the shared transaction fails, each write runs again in a transaction of its own, so one
write's error (a constraint, bad data, a deadlock) is its alone and the others still commit.

A commit delay (PostgreSQL's ``commit_delay`` and ``commit_siblings``, on the loop): when a
transaction is about to start with at least ``siblings`` writes already waiting, more are coming,
so it waits ``delay_s`` first and takes those too. A lone write goes at once, so a quiet process's
latency is unchanged; a busy one spends less per write. Measured on a SQLite file, whose
transactions run on the loop so that nothing joins one while it runs: with two workers end to
end, a worker committed 2.6 writes at a time, and 4.5 with a 2 ms delay.
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
    def __init__(
        self,
        begin: Callable[[], AbstractAsyncContextManager[C]],
        *,
        delay_s: float = 0.0,
        siblings: int = 2,
    ) -> None:
        """``begin`` opens a write transaction (committed when its context exits without an
        error) and gives what the writes run on; one runs at a time (one drainer). ``delay_s``
        and ``siblings``: the commit delay (module docstring)."""
        if delay_s < 0 or siblings < 1:
            raise ValueError("delay_s must be >= 0 and siblings >= 1")
        self._begin = begin
        self._delay_s = delay_s
        self._siblings = siblings
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
                if self._delay_s and len(self._pending) >= self._siblings:
                    await asyncio.sleep(self._delay_s)
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
