"""Stopping a run from anywhere: a word on a state-store channel cancels the agent.

Sessions use it for ``interrupt`` (a newer turn stops the running one) and tasks for cancel
(the API stops a running task): both may be on another replica, so the word travels through
the state store. A word that arrives after the run ended is ignored, so a finished run is never
turned into a stopped one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from shipyard.errors import ShipyardError
from shipyard.stores.state.base import StateStore
from shipyard.telemetry.events import TERMINAL, Event, Sink

T = TypeVar("T")


async def stoppable(
    state: StateStore,
    channel: str,
    word: bytes,
    run: Callable[[Sequence[Sink]], Awaitable[T]],
    *,
    stopped: Callable[[], ShipyardError],
    reason: str,
    marker: str | None = None,
) -> T:
    """``run(extra_sinks)`` until it ends or ``word`` arrives on ``channel``; then the run is
    cancelled with ``reason`` (its record says so) and ``stopped()`` is raised instead.

    A word published before the subscription was in place is lost; for requests that must not
    be (a cancel), the requester also sets the key ``marker``, checked once subscribed."""
    task = asyncio.current_task()
    assert task is not None
    ended = False
    cancelled = False

    def watch_end(event: Event) -> None:
        nonlocal ended
        ended = ended or event.type in TERMINAL

    async def watch(messages: AsyncIterator[bytes]) -> None:
        nonlocal cancelled
        async for message in messages:
            if message == word and not ended:
                cancelled = True
                task.cancel(reason)
                return

    async with state.subscribe(channel) as messages:
        if marker is not None and await state.get(marker) is not None:
            raise stopped()
        watcher = asyncio.create_task(watch(messages))
        try:
            return await run([watch_end])
        except asyncio.CancelledError:
            if not cancelled:
                raise
            task.uncancel()
            raise stopped() from None
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
