"""Server-Sent Events: a run's events as they happen, ending with its terminal event."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from starlette.responses import StreamingResponse

from shipyard.errors import ShipyardError
from shipyard.telemetry.events import TERMINAL, Event, Sink

_background: set[asyncio.Task[Any]] = set()


def format_event(event: Event) -> bytes:
    return f"id: {event.seq}\nevent: {event.type}\ndata: {event.model_dump_json()}\n\n".encode()


def stream_run(start: Callable[[Sink], Coroutine[Any, Any, Any]]) -> StreamingResponse:
    """Start a run with a queue as one of its sinks and stream what lands in the queue.

    The run is a task of its own: a client that goes away does not cancel it, so the run still
    finishes and is recorded.
    """
    queue: asyncio.Queue[Event] = asyncio.Queue()
    task: asyncio.Task[Any] = asyncio.create_task(start(queue.put_nowait))
    _background.add(task)
    task.add_done_callback(_finished)
    return StreamingResponse(
        _frames(queue, task),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _frames(queue: asyncio.Queue[Event], task: asyncio.Task[Any]) -> AsyncIterator[bytes]:
    while True:
        getter = asyncio.ensure_future(queue.get())
        done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            event = getter.result()
            yield format_event(event)
            if event.type in TERMINAL:
                break
            continue
        getter.cancel()
        while not queue.empty():  # the run ended: drain what it emitted
            yield format_event(queue.get_nowait())
        break
    with contextlib.suppress(ShipyardError):
        await task  # the record is durable before the stream closes


def _finished(task: asyncio.Task[Any]) -> None:
    _background.discard(task)
    if not task.cancelled():
        task.exception()  # failures are already in the stream and the records
