"""``/v1/workers``: the task workers and their heartbeats (the operator's admin keys only:
workers serve every tenant)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from shipyard.api.auth import require_operator
from shipyard.api.errors import responses
from shipyard.api.fields import MAX_SECONDS
from shipyard.api.keys import Principal
from shipyard.api.state import services
from shipyard.stores.records.base import WorkerRecord

router = APIRouter(prefix="/v1/workers", tags=["workers"])
_ERRORS = responses()
Operator = Annotated[Principal, Depends(require_operator)]

STALE_AFTER = 3
"""Heartbeats missed before a worker is shown ``stale`` (killed, hung or cut off)."""


class WorkerView(WorkerRecord):
    state: Literal["alive", "stale", "stopped"] = Field(
        description="stopped: it said so on its way out; stale: no heartbeat for "
        f"{STALE_AFTER} intervals; alive otherwise."
    )


class WorkerList(BaseModel):
    workers: list[WorkerView]


def state_of(worker: WorkerRecord, now: datetime) -> Literal["alive", "stale", "stopped"]:
    if worker.stopped_at is not None:
        return "stopped"
    if now - worker.last_seen > timedelta(seconds=STALE_AFTER * worker.heartbeat_s):
        return "stale"
    return "alive"


@router.get("", response_model=WorkerList, responses=_ERRORS)
async def list_workers(
    request: Request,
    principal: Operator,
    seen_within_s: Annotated[
        float,
        Query(
            gt=0,
            le=MAX_SECONDS,
            allow_inf_nan=False,
            description="Only workers seen this recently (at most ten years).",
        ),
    ]
    | None = None,
) -> WorkerList:
    """Most recently seen first; a worker not seen for ``SHIPYARD_WORKER_RETENTION_S`` (a day
    by default) is no longer listed."""
    now = datetime.now(UTC)
    since = now - timedelta(seconds=seen_within_s) if seen_within_s else None
    found = await services(request).records.list_workers(since=since)
    return WorkerList(workers=[WorkerView(**w.model_dump(), state=state_of(w, now)) for w in found])
