"""``/v1/runs``: the tenant's recorded runs and their events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from shipyard.api.auth import require
from shipyard.api.errors import responses
from shipyard.api.fields import INT32_MAX, Text
from shipyard.api.keys import Principal
from shipyard.api.schemas import EventList, RevealedPseudonyms, RunPage
from shipyard.api.served import served
from shipyard.api.state import services
from shipyard.errors import RunNotFound
from shipyard.stores.records.base import RunRecord, RunStatus

router = APIRouter(prefix="/v1/runs", tags=["runs"])
_ERRORS = responses(404)
Reader = Annotated[Principal, Depends(require("read"))]


@router.get("", response_model=RunPage, responses=responses())
async def list_runs(
    request: Request,
    principal: Reader,
    agent: Text | None = None,
    status: RunStatus | None = None,
    session_id: Text | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Text | None = None,
) -> RunPage:
    """Newest first; pass ``next_cursor`` as ``cursor`` for the next page."""
    page = await services(request).records.list_runs(
        principal.tenant_id,
        agent=agent,
        status=status,
        session_id=session_id,
        limit=limit,
        cursor=cursor,
    )
    return RunPage(runs=page.items, next_cursor=page.next_cursor)


@router.get("/{run_id}", response_model=RunRecord, responses=_ERRORS)
async def get_run(run_id: Text, request: Request, principal: Reader) -> RunRecord:
    run = await services(request).records.get_run(principal.tenant_id, run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id!r}")
    return served(run, row=run_id)


@router.get("/{run_id}/events", response_model=EventList, responses=_ERRORS)
async def run_events(
    run_id: Text,
    request: Request,
    principal: Reader,
    after: Annotated[
        int, Query(ge=0, le=INT32_MAX, description="Only events with seq above this")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> EventList:
    records = services(request).records
    if await records.get_run(principal.tenant_id, run_id) is None:
        raise RunNotFound(f"no run {run_id!r}")
    events = await records.list_events(principal.tenant_id, run_id, after_seq=after, limit=limit)
    return EventList(events=events)


@router.get("/{run_id}/pseudonyms", response_model=RevealedPseudonyms, responses=_ERRORS)
async def reveal_pseudonyms(
    run_id: Text,
    request: Request,
    principal: Annotated[Principal, Depends(require("pii:reveal"))],
) -> RevealedPseudonyms:
    """The originals behind the run's pseudonyms (its session's, for a turn), while they live
    in the state store. Needs the ``pii:reveal`` scope by name (``admin`` alone is not
    enough); each reveal is a row of the audit log, as every request is."""
    found = services(request)
    run = await found.records.get_run(principal.tenant_id, run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id!r}")
    vault = found.invoker.pseudonyms
    tokens = None if vault is None else await vault.reveal(run.tenant_id, run_id, run.session_id)
    if tokens is None:
        raise RunNotFound(f"run {run_id!r} has no pseudonyms (it made none, or they expired)")
    return RevealedPseudonyms(run_id=run_id, session_id=run.session_id, tokens=tokens)
