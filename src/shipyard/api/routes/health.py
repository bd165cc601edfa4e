"""Liveness and readiness, without authentication."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Request

from shipyard.api.errors import error_response
from shipyard.api.schemas import ErrorResponse
from shipyard.api.state import services
from shipyard.errors import ShipyardError

log = structlog.get_logger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=None,
    responses={503: {"model": ErrorResponse, "description": "A store does not answer."}},
)
async def readyz(request: Request) -> object:
    """The process can serve: its stores answer."""
    found = services(request)
    stores = found.pinged()
    for name, store in stores:
        try:
            await store.ping()
        except ShipyardError as exc:  # the reason goes to the log, not to an anonymous caller
            log.warning("not ready", store=name, error=exc.message)
            return error_response(503, "not_ready", f"the {name} store does not answer")
    return {"status": "ready", "checks": {name: "ok" for name, _ in stores}}
