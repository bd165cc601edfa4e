"""Server-Sent Events: a run's events as they happen, its terminal event once it is recorded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from starlette.responses import StreamingResponse

from shipyard.errors import ShipyardError, StoreError
from shipyard.telemetry.events import TERMINAL, Event, Sink

_background: set[asyncio.Task[Any]] = set()


def format_event(event: Event, event_id: str | None = None) -> bytes:
    """A frame; its ``id`` is the event's ``seq`` unless given."""
    ident = str(event.seq) if event_id is None else event_id
    return f"id: {ident}\nevent: {event.type}\ndata: {event.model_dump_json()}\n\n".encode()


def format_error(error: ShipyardError) -> bytes:
    return f"event: error\ndata: {json.dumps({'error': error.to_dict()})}\n\n".encode()


def stream_run(start: Callable[[Sink], Coroutine[Any, Any, Any]]) -> StreamingResponse:
    """Start a run with a queue as one of its sinks and stream what lands in the queue.

    The run is a task of its own: a client that goes away does not cancel it, so the run still
    finishes and is recorded. The terminal event is sent only once the run's record is durable;
    if the store cannot confirm it, or the run was refused before it began, the stream ends with
    an ``error`` event instead.
    """
    queue: asyncio.Queue[Event | None] = asyncio.Queue()
    task: asyncio.Task[Any] = asyncio.create_task(start(queue.put_nowait))
    _background.add(task)

    def finished(done: asyncio.Task[Any]) -> None:
        _background.discard(done)
        if not done.cancelled():
            done.exception()  # retrieved here too: the client may have gone
        queue.put_nowait(None)

    task.add_done_callback(finished)
    return StreamingResponse(
        _frames(queue, task),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _frames(
    queue: asyncio.Queue[Event | None], task: asyncio.Task[Any]
) -> AsyncIterator[bytes]:
    terminal: Event | None = None
    while (event := await queue.get()) is not None:
        if event.type in TERMINAL:
            terminal = event  # held back until the record is durable
        else:
            yield format_event(event)
    error = None if task.cancelled() else task.exception()
    if isinstance(error, StoreError) or (terminal is None and isinstance(error, ShipyardError)):
        yield format_error(error)  # unconfirmed, or refused before the run began (busy)
    elif terminal is not None:
        yield format_event(terminal)
