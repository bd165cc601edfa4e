"""``TakeBatcher``: the requests of one moment that count against the same rates share one
state-store call.

Under load a tenant's requests arrive many at a time, and each took its request rates with a
round trip of its own (a write transaction on SQLite, a script on Redis). The batcher gathers
the takes of the same rates made in one turn of the event loop and spends them with one
``take(rates, cost=n)``: GCRA's take is all or nothing, so when all ``n`` fit each request is
admitted exactly as ``n`` single takes in a row would have admitted it (the first sees the most
left). When they do not all fit — at the limit's edge — the batch falls back to single takes in
arrival order, so exactly as many are admitted as there are units left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from shipyard.stores.state.base import Quota, Rate, Rates


@dataclass
class _Batch:
    rates: Sequence[Rate]
    waiters: list[asyncio.Future[Quota]] = field(default_factory=list)


class TakeBatcher:
    """Coalesces concurrent ``take(rates)`` of one unit each on the same rates."""

    def __init__(self, store: Rates) -> None:
        self._store = store
        self._open: dict[tuple[Rate, ...], _Batch] = {}
        self._settling: set[asyncio.Task[None]] = set()

    async def take(self, rates: Sequence[Rate]) -> Quota:
        """One unit of every rate (as ``Rates.take(rates)``), shared with the takes of the same
        rates made in this turn of the loop."""
        loop = asyncio.get_running_loop()
        key = tuple(rates)
        batch = self._open.get(key)
        if batch is None:
            batch = self._open[key] = _Batch(rates)
            loop.call_soon(self._close, key)
        waiter: asyncio.Future[Quota] = loop.create_future()
        batch.waiters.append(waiter)
        return await waiter

    def _close(self, key: tuple[Rate, ...]) -> None:
        batch = self._open.pop(key)
        task = asyncio.ensure_future(self._settle(batch))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, batch: _Batch) -> None:
        waiters = batch.waiters
        try:
            if len(waiters) > 1:
                together = await self._store.take(batch.rates, len(waiters))
                if together.allowed:
                    for i, waiter in enumerate(waiters):
                        _resolve(waiter, _after(together, batch.rates, len(waiters) - 1 - i))
                    return
            for waiter in waiters:  # one at a time: exactly what is left is admitted
                _resolve(waiter, await self._store.take(batch.rates))
        except BaseException as exc:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            if not isinstance(exc, Exception):
                raise


def _after(together: Quota, rates: Sequence[Rate], later: int) -> Quota:
    """What a single take would have found with ``later`` takes of the batch still to come."""
    if later == 0:
        return together
    tightest = next((r for r in rates if r.key == together.key), None)
    per_unit = tightest.period_s / tightest.limit if tightest is not None else 0.0
    return replace(
        together,
        remaining=together.remaining + later,
        reset_s=max(0.0, together.reset_s - later * per_unit),
    )


def _resolve(waiter: asyncio.Future[Quota], quota: Quota) -> None:
    if not waiter.done():  # its request may have been cancelled meanwhile
        waiter.set_result(quota)
