"""Liveness and readiness, without authentication."""

from __future__ import annotations

from fastapi import APIRouter, Request

from shipyard.api.errors import error_response
from shipyard.errors import ShipyardError

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(request: Request) -> object:
    """The process can serve: its stores answer."""
    services = request.app.state.services
    stores = (("records", services.records), ("state", services.state), ("broker", services.broker))
    for name, store in stores:
        try:
            await store.ping()
        except ShipyardError as exc:
            return error_response(503, "not_ready", f"{name} store: {exc.message}")
    return {"status": "ready", "checks": {name: "ok" for name, _ in stores}}
