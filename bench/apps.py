"""The applications under test.

- `shipyard_app`: the real thing, one scripted echo agent. Built lazily on first access so that
  importing this module for `bare_app` never requires the Shipyard package to be complete.
- `bare_app`: a bare FastAPI app answering the same request with the same-shaped JSON. It does
  nothing else (no auth, no recording) and is the ceiling Shipyard is compared with.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

__all__ = ["bare_app", "build_shipyard_app"]


class InvokeRequest(BaseModel):
    input: str


bare_app = FastAPI(title="bare echo", docs_url=None, redoc_url=None, openapi_url=None)


@bare_app.post("/v1/agents/echo/invoke")
async def bare_invoke(body: InvokeRequest) -> dict[str, Any]:
    return {
        "run_id": uuid.uuid4().hex,
        "output": "echo: " + body.input,
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "cost_usd": 0.0},
    }


@bare_app.get("/healthz")
async def bare_healthz() -> dict[str, str]:
    return {"status": "ok"}


def build_shipyard_app() -> Any:
    import shipyard

    return shipyard.App(
        agents=[shipyard.Agent(name="echo", model="scripted:echo", instructions="Echo.")]
    )


_built: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """Module attribute `shipyard_app`, built on first access (`bench.apps:shipyard_app`)."""
    if name != "shipyard_app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _built:
        _built[name] = build_shipyard_app()
    return _built[name]
