"""``/ui/live``: Server-Sent Events that tell the open pages something changed.

The stream follows the records, where every process's runs land (this server's, other
replicas', the workers'), not one process's memory: every ``LIVE_POLL_S`` it reads the first
page of the viewed tenant's runs (a cursor page on the primary key, no scan) and, given a
``run_id``, that run's events after the last one sent. It sends ``event: runs`` when the newest
runs or their statuses change, and ``event: steps`` (``data``: the stored events, as the API's
``/v1/runs/{id}/events`` has them) when a run being watched has new events. The pages then
reload the part that changed (htmx) or redraw their chart.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Annotated

import structlog
from fastapi import APIRouter, Query, Request
from starlette.responses import StreamingResponse

from shipyard.api.fields import INT32_MAX, Text
from shipyard.api.state import services
from shipyard.api.ui.session import CurrentViewer
from shipyard.errors import StoreError
from shipyard.stores.records.base import Page, RecordStore, RunRecord

log = structlog.get_logger(__name__)
router = APIRouter()
LIVE_POLL_S = 1.0
KEEPALIVE_S = 15.0
WATCHED = 20


@router.get("/live", include_in_schema=False)
async def live(
    request: Request,
    viewer: CurrentViewer,
    run_id: Text | None = None,
    mark: Annotated[str | None, Query(max_length=64)] = None,
    after: Annotated[int, Query(ge=0, le=INT32_MAX)] = 0,
) -> StreamingResponse:
    """``mark``: what the page was rendered from (``live_mark``); ``after``: the last event of
    ``run_id`` the page shows. Changes made between the page's render and this stream's start
    are sent at once, not lost."""
    records = services(request).records
    return StreamingResponse(
        _frames(request, records, viewer.tenant_id, run_id, (mark, after)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def live_mark(records: RecordStore, tenant_id: str) -> str:
    """A digest of the tenant's newest runs and their statuses, as a page saw them."""
    return _digest(await records.list_runs(tenant_id, limit=WATCHED))


def _digest(page: Page[RunRecord]) -> str:
    seen = "|".join(f"{r.id}:{r.status}" for r in page.items)
    return hashlib.sha256(seen.encode()).hexdigest()[:16]


async def _frames(
    request: Request,
    records: RecordStore,
    tenant_id: str,
    run_id: str | None,
    start: tuple[str | None, int],
) -> AsyncIterator[bytes]:
    seen, after = start
    idle = 0.0
    yield b"retry: 2000\n\n"
    while not await request.is_disconnected():
        try:  # a store that fails one poll costs that tick, not the page's stream
            page = await records.list_runs(tenant_id, limit=WATCHED)
            events = await records.list_events(tenant_id, run_id, after_seq=after) if run_id else []
        except StoreError as exc:
            log.warning("ui.live: a poll failed", error=exc.message)
            page, events = None, []
        now = _digest(page) if page is not None else seen
        if page is not None and seen is not None and now != seen:
            yield f"event: runs\ndata: {json.dumps([r.id for r in page.items])}\n\n".encode()
            idle = 0.0
        seen = now
        for event in events:
            after = event.seq
            yield _step_frame(event.model_dump_json(), event.seq)
            idle = 0.0
        if idle >= KEEPALIVE_S:
            yield b": keep-alive\n\n"
            idle = 0.0
        await asyncio.sleep(LIVE_POLL_S)
        idle += LIVE_POLL_S


def _step_frame(data: str, seq: int) -> bytes:
    return f"id: {seq}\nevent: steps\ndata: {data}\n\n".encode()
