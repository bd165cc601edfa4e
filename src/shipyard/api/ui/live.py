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
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from starlette.responses import StreamingResponse

from shipyard.api.fields import Text
from shipyard.api.state import services
from shipyard.api.ui.session import CurrentViewer
from shipyard.stores.records.base import RecordStore

router = APIRouter()
LIVE_POLL_S = 1.0
KEEPALIVE_S = 15.0
WATCHED = 20


@router.get("/live", include_in_schema=False)
async def live(
    request: Request, viewer: CurrentViewer, run_id: Text | None = None
) -> StreamingResponse:
    records = services(request).records
    return StreamingResponse(
        _frames(request, records, viewer.tenant_id, run_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _frames(
    request: Request, records: RecordStore, tenant_id: str, run_id: str | None
) -> AsyncIterator[bytes]:
    seen: list[tuple[str, str]] | None = None
    after = 0
    idle = 0.0
    yield b"retry: 2000\n\n"
    while not await request.is_disconnected():
        page = await records.list_runs(tenant_id, limit=WATCHED)
        now: list[tuple[str, str]] = [(r.id, r.status) for r in page.items]
        if seen is not None and now != seen:
            yield f"event: runs\ndata: {json.dumps([i for i, _ in now])}\n\n".encode()
            idle = 0.0
        seen = now
        if run_id is not None:
            for event in await records.list_events(tenant_id, run_id, after_seq=after):
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
