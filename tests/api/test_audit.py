"""The audit log as the API writes it: one row per request — allowed, refused for a bad key,
a missing scope or another tenant — with no secret in it; ``GET /v1/audit`` filters and pages;
an expired key answers 401 and leaves a row naming it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shipyard import Agent
from shipyard.app import App
from shipyard.config import load_settings
from shipyard.runtime.audit_chain import verify
from shipyard.runtime.services import Services

OPERATOR = "sk_shp_test_admin_audit"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = load_settings(
        home=tmp_path, admin_key=OPERATOR, log_events=False, metrics=False, audit_flush_s=0
    )
    asgi = App(agents=[Agent(name="echo", model="scripted:echo")]).asgi(settings)
    async with asgi.router.lifespan_context(asgi):
        yield asgi


def client(app: FastAPI, key: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://shipyard", headers=headers
    )


def services(app: FastAPI) -> Services:
    found: Services = app.state.services
    return found


async def rows(app: FastAPI, **filters: Any) -> list[dict[str, Any]]:
    audit = services(app).audit
    assert audit is not None
    await audit.flush()
    async with client(app, OPERATOR) as c:
        reply = await c.get("/v1/audit", params={"limit": 500, **filters})
    assert reply.status_code == 200, reply.text
    entries: list[dict[str, Any]] = reply.json()["entries"]
    return [e for e in entries if e["action"] != "GET /v1/audit"]


async def test_allowed_and_refused_requests_each_leave_one_row(app: FastAPI) -> None:
    secret, reader = await app.state.keys.create("acme", ["read"])
    async with client(app, secret) as c:
        listed = await c.get("/v1/runs", headers={"X-Request-Id": "req-42"})
        assert listed.status_code == 200 and listed.headers["x-request-id"] == "req-42"
        assert (await c.post("/v1/agents/echo/invoke", json={"input": "hi"})).status_code == 403
        assert (await c.get("/v1/tenants/globex")).status_code == 403
        assert (await c.get("/v1/runs/run_nosuch")).status_code == 404
    async with client(app, "sk_shp_not_a_key") as c:
        refused = await c.get("/v1/runs?access_token=sk_shp_in_query")
        assert refused.status_code == 401 and refused.headers["x-request-id"].startswith("req_")
    found = {(r["action"], r["outcome"], r["status"]): r for r in await rows(app)}
    ok = found[("GET /v1/runs", "ok", 200)]
    assert (ok["tenant_id"], ok["key_id"], ok["scope"], ok["request_id"]) == (
        "acme",
        reader.id,
        "read",
        "req-42",
    )
    assert ok["client"] == "127.0.0.1" and ok["resource"] == "/v1/runs"
    assert found[("POST /v1/agents/{agent}/invoke", "denied", 403)]["scope"] == "invoke"
    assert found[("GET /v1/tenants/{tenant_id}", "denied", 403)]["key_id"] == reader.id
    assert found[("GET /v1/runs/{run_id}", "not_found", 404)]["resource"] == "/v1/runs/run_nosuch"
    bad = found[("GET /v1/runs", "denied", 401)]
    assert bad["key_id"] is None and bad["tenant_id"] is None
    dump = str(await rows(app))
    assert "sk_shp_" not in dump  # neither the keys used nor the one in the query string


async def test_the_list_filters_pages_and_keeps_tenants_apart(app: FastAPI) -> None:
    acme, acme_key = await app.state.keys.create("acme", ["admin"])
    globex, _ = await app.state.keys.create("globex", ["admin"])
    for key in (acme, acme, acme, globex):
        async with client(app, key) as c:
            assert (await c.get("/v1/runs")).status_code == 200
    mine = await rows(app, tenant="acme", action="GET /v1/runs")
    assert len(mine) == 3 and {r["key_id"] for r in mine} == {acme_key.id}
    assert len(await rows(app, key=acme_key.id, outcome="ok")) == 3
    assert await rows(app, tenant="acme", since="2999-01-01T00:00:00Z") == []
    async with client(app, OPERATOR) as c:
        first = (await c.get("/v1/audit", params={"tenant": "acme", "limit": 2})).json()
        rest = await c.get("/v1/audit", params={"tenant": "acme", "cursor": first["next_cursor"]})
    ids = [e["id"] for e in first["entries"] + rest.json()["entries"]]
    assert len(ids) == len(set(ids)) >= 3 and ids == sorted(ids, reverse=True)
    async with client(app, acme) as c:
        own = (await c.get("/v1/audit")).json()["entries"]
        assert own and {e["tenant_id"] for e in own} == {"acme"}
        assert (await c.get("/v1/audit", params={"tenant": "globex"})).status_code == 403
    secret, _ = await app.state.keys.create("acme", ["read", "invoke"])
    async with client(app, secret) as c:
        assert (await c.get("/v1/audit")).status_code == 403


async def test_an_expired_key_answers_401_and_its_row_names_it(app: FastAPI) -> None:
    secret, record = await app.state.keys.create("acme", ["read"], expires_in=timedelta(hours=1))
    async with client(app, secret) as c:
        assert (await c.get("/v1/runs")).status_code == 200
    await services(app).records.expire_api_key(record.id, record.created_at)
    app.state.keys._cache.clear()  # as another process would after SHIPYARD_KEY_CACHE_S
    async with client(app, secret) as c:
        reply = await c.get("/v1/runs")
    assert reply.status_code == 401 and "expired" in reply.json()["error"]["message"]
    refused = await rows(app, key=record.id, outcome="denied")
    assert [(r["status"], r["tenant_id"]) for r in refused] == [(401, None)]


async def test_the_rows_written_by_requests_verify(app: FastAPI, tmp_path: Path) -> None:
    async with client(app, OPERATOR) as c:
        for _ in range(5):
            await c.get("/v1/runs")
    await rows(app)
    key = (tmp_path / "audit.key").read_text().strip().encode()
    reports = await verify(services(app).records, key)
    assert reports and all(not r.problems for r in reports)


async def test_with_audit_off_no_row_is_written_but_keys_last_use_is(tmp_path: Path) -> None:
    settings = load_settings(
        home=tmp_path, admin_key=OPERATOR, log_events=False, metrics=False, audit=False
    )
    asgi = App(agents=[Agent(name="echo", model="scripted:echo")]).asgi(settings)
    async with asgi.router.lifespan_context(asgi):
        secret, record = await asgi.state.keys.create("acme", ["read"])
        async with client(asgi, secret) as c:
            assert (await c.get("/v1/runs")).status_code == 200
        audit = services(asgi).audit
        assert audit is not None and not audit.enabled
        await audit.flush(final=True)
        store = services(asgi).records
        assert await store.audit_chains() == []
        [key] = [k for k in await store.list_api_keys("acme") if k.id == record.id]
        assert key.last_used_at is not None
