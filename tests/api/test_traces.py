"""``GET /v1/traces/{trace_id}`` in process, on a real SQLite record store: the caller's tenant's
spans only, and precise errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from shipyard import Agent
from shipyard.agents.context import RunRequest
from shipyard.app import App
from shipyard.config import load_settings
from shipyard.runtime.services import Services
from shipyard.telemetry.tracecontext import TraceParent

ADMIN = "sk_shp_test_admin_traces"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = load_settings(home=tmp_path, admin_key=ADMIN, log_events=False, metrics=False)
    asgi = App(agents=[Agent(name="echo", model="scripted:echo")]).asgi(settings)
    async with asgi.router.lifespan_context(asgi):
        yield asgi


def services(app: FastAPI) -> Services:
    svc: Services = app.state.services
    return svc


async def client(app: FastAPI, key: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://shipyard", headers=headers
    )


async def traced_run(app: FastAPI, tenant: str) -> str:
    """A run of ``tenant`` under a caller's span (recorded once ``invoke`` returns)."""
    caller = TraceParent.new()
    await services(app).invoker.invoke(
        RunRequest(tenant_id=tenant, agent="echo", input="hi", parent=caller)
    )
    return caller.trace_id


async def test_a_tenant_reads_its_trace_by_start_time(app: FastAPI) -> None:
    trace_id = await traced_run(app, "default")
    async with await client(app, ADMIN) as admin:
        reply = await admin.get(f"/v1/traces/{trace_id.upper()}")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["trace_id"] == trace_id
    assert [s["name"] for s in body["spans"]] == ["invoke_agent echo", "chat echo"]
    run, chat = body["spans"]
    assert chat["parent_span_id"] == run["span_id"]
    assert set(run) == {
        "trace_id", "span_id", "parent_span_id", "name", "kind", "service", "start_time",
        "end_time", "duration_ms", "status", "status_message", "attributes", "events",
    }  # fmt: skip
    assert {s["trace_id"] for s in body["spans"]} == {trace_id}
    assert run["attributes"]["shipyard.tenant_id"] == "default"
    assert run["duration_ms"] >= chat["duration_ms"] >= 0


async def test_another_tenants_trace_is_not_found(app: FastAPI) -> None:
    keys = app.state.keys
    other_key, _ = await keys.create("globex", ["read"])
    trace_id = await traced_run(app, "default")
    async with await client(app, other_key) as other:
        reply = await other.get(f"/v1/traces/{trace_id}")
        assert reply.status_code == 404
        assert reply.json()["error"]["code"] == "not_found"
        missing = await other.get(f"/v1/traces/{'ab' * 16}")
        assert missing.status_code == 404


async def test_a_bad_id_is_422_and_no_key_is_401(app: FastAPI) -> None:
    keys = app.state.keys
    invoke_only, _ = await keys.create("default", ["invoke"])
    async with await client(app, ADMIN) as admin:
        for bad in ("abc", "g" * 32, "0" * 33):
            reply = await admin.get(f"/v1/traces/{bad}")
            assert reply.status_code == 422, bad
            assert reply.json()["error"]["code"] == "invalid_input"
    async with await client(app, None) as anonymous:
        assert (await anonymous.get(f"/v1/traces/{'ab' * 16}")).status_code == 401
    async with await client(app, invoke_only) as invoker:
        assert (await invoker.get(f"/v1/traces/{'ab' * 16}")).status_code == 403
