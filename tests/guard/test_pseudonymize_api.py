"""Pseudonymisation through the API: the caller's JSON answer and SSE stream carry the
originals, the records the tokens; ``GET /v1/runs/{id}/pseudonyms`` needs ``pii:reveal`` by
name (an admin key alone is refused) and each reveal is an audit row."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shipyard import Agent, App, GuardPolicy, GuardRule
from shipyard.config import load_settings
from shipyard.runtime.services import Services

ADMIN = "sk_shp_test_admin_pseudonyms"
NAME, EMAIL = "Maria Garcia", "maria.garcia@example.com"
SAID = f"Hi, I am {NAME}, mail me at {EMAIL} please."
TOKENS = "Hi, I am <PERSON_1>, mail me at <EMAIL_ADDRESS_1> please."
POLICY = GuardPolicy(rules=(GuardRule(detector="pii", surfaces=("input",), action="pseudonymize"),))


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = load_settings(
        home=tmp_path, admin_key=ADMIN, log_events=False, metrics=False, audit_flush_s=0
    )
    shipyard = App(agents=[Agent(name="echo", model="scripted:echo", guards=POLICY)])
    asgi = shipyard.asgi(settings)
    async with asgi.router.lifespan_context(asgi):
        yield asgi


def client(app: FastAPI, key: str = ADMIN, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://s",
        headers={"Authorization": f"Bearer {key}", **headers},
    )


def services(app: FastAPI) -> Services:
    found: Services = app.state.services
    return found


async def test_the_caller_gets_the_originals_and_the_records_keep_the_tokens(
    app: FastAPI,
) -> None:
    async with client(app) as c:
        reply = await c.post("/v1/agents/echo/invoke", json={"input": SAID})
        assert reply.status_code == 200, reply.text
        assert reply.json()["output"] == f"echo: {SAID}"
        run_id = reply.json()["run_id"]
        events = (await c.get(f"/v1/runs/{run_id}/events")).json()["events"]
        record = (await c.get(f"/v1/runs/{run_id}")).json()
    stored = json.dumps([events, record])
    assert NAME not in stored and EMAIL not in stored
    assert events[0]["data"]["input"] == TOKENS
    assert events[-1]["data"]["output"] == f"echo: {TOKENS}"


async def test_the_sse_stream_carries_the_originals(app: FastAPI) -> None:
    async with client(app, Accept="text/event-stream") as c:
        reply = await c.post("/v1/agents/echo/invoke", json={"input": SAID})
    assert reply.status_code == 200, reply.text
    frames: list[dict[str, Any]] = [
        json.loads(line[5:]) for line in reply.text.splitlines() if line.startswith("data:")
    ]
    deltas = "".join(f["data"]["text"] for f in frames if f["type"] == "llm.delta")
    assert deltas == f"echo: {SAID}"
    assert "<PERSON" not in reply.text and "<EMAIL" not in reply.text
    assert frames[-1]["type"] == "run.completed"
    assert frames[-1]["data"]["output"] == f"echo: {SAID}"


async def test_revealing_needs_pii_reveal_by_name_and_is_audited(app: FastAPI) -> None:
    async with client(app) as c:
        run_id = (await c.post("/v1/agents/echo/invoke", json={"input": SAID})).json()["run_id"]
        admin_only = await c.get(f"/v1/runs/{run_id}/pseudonyms")
    assert admin_only.status_code == 403, admin_only.text
    assert "pii:reveal" in admin_only.text
    revealer, key = await app.state.keys.create("default", ["admin", "pii:reveal"])
    other, _ = await app.state.keys.create("globex", ["pii:reveal"])
    async with client(app, revealer) as c:
        revealed = await c.get(f"/v1/runs/{run_id}/pseudonyms")
        missing = await c.get("/v1/runs/run_nosuch/pseudonyms")
    async with client(app, other) as c:
        elsewhere = await c.get(f"/v1/runs/{run_id}/pseudonyms")
    assert revealed.status_code == 200, revealed.text
    assert revealed.json()["tokens"] == {"<PERSON_1>": NAME, "<EMAIL_ADDRESS_1>": EMAIL}
    assert missing.status_code == 404 and elsewhere.status_code == 404
    audit = services(app).audit
    assert audit is not None
    await audit.flush()
    async with client(app) as c:
        rows = (await c.get("/v1/audit", params={"limit": 500})).json()["entries"]
    reveals = [r for r in rows if r["action"] == "GET /v1/runs/{run_id}/pseudonyms"]
    outcomes = {(r["key_id"], r["scope"], r["status"]) for r in reveals}
    assert (key.id, "pii:reveal", 200) in outcomes
    assert any(status == 403 for _, _, status in outcomes)
    assert NAME not in json.dumps(rows)
