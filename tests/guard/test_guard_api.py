"""Guards through the API: the SSE stream, the records and the audit log see only what the
policy lets out; a blocked input is 400 ``input_blocked``; the server-wide default applies to
agents without a policy of their own."""

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
from shipyard.errors import ConfigError
from shipyard.runtime.services import Services
from tests.guard.detectors import ATTACK, CARD

ADMIN = "sk_shp_test_admin_guards"
DEFAULT = json.dumps(
    {"rules": [{"detector": "test_cards", "surfaces": ["output"], "action": "redact"}]}
)
STRICT = GuardPolicy(
    rules=(GuardRule(detector="test_injection", surfaces=("input",), action="block"),)
)

SEALED = GuardPolicy(
    rules=(GuardRule(detector="test_cards", surfaces=("output",), action="block"),)
)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = load_settings(
        home=tmp_path, admin_key=ADMIN, log_events=False, metrics=False, audit_flush_s=0,
        guards=DEFAULT,
    )  # fmt: skip
    shipyard = App(
        agents=[
            Agent(name="echo", model="scripted:echo"),  # the server's policy
            Agent(name="strict", model="scripted:echo", guards=STRICT),
            Agent(name="open", model="scripted:echo", guards=GuardPolicy()),
            Agent(name="sealed", model="scripted:echo", guards=SEALED),
        ]
    )
    asgi = shipyard.asgi(settings)
    async with asgi.router.lifespan_context(asgi):
        yield asgi


def client(app: FastAPI, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://s",
        headers={"Authorization": f"Bearer {ADMIN}", **headers},
    )


async def sse(app: FastAPI, agent: str, text: str) -> list[dict[str, Any]]:
    async with client(app, Accept="text/event-stream") as c:
        reply = await c.post(f"/v1/agents/{agent}/invoke", json={"input": text})
    assert reply.status_code == 200, reply.text
    return [json.loads(line[5:]) for line in reply.text.splitlines() if line.startswith("data:")]


def services(app: FastAPI) -> Services:
    found: Services = app.state.services
    return found


def digits_in(blob: str) -> bool:
    return CARD.replace(" ", "") in blob.replace(" ", "").replace('"', "").replace(",", "")


async def test_a_card_split_over_five_deltas_never_reaches_the_sse_stream_nor_the_records(
    app: FastAPI,
) -> None:
    streamed = await sse(app, "echo", f"my card {CARD} ok")
    deltas = [e["data"]["text"] for e in streamed if e["type"] == "llm.delta"]
    assert "".join(deltas) == "echo: my card [CREDIT_CARD] ok"
    outbound = [e for e in streamed if e["type"] not in ("run.started", "llm.request")]
    assert CARD not in json.dumps(outbound) and not digits_in(json.dumps(outbound))
    [run] = (await services(app).records.list_runs("default")).items
    assert run.output == "echo: my card [CREDIT_CARD] ok"
    stored = await services(app).records.list_events("default", run.id)
    [response] = [e for e in stored if e.type == "llm.response"]
    assert response.data["content"] == "echo: my card [CREDIT_CARD] ok"
    flags = [e for e in stored if e.type == "guard.flag"]
    assert flags and all(e.data["surface"] == "output" for e in flags)
    assert not digits_in(json.dumps([e.data for e in flags]))


async def test_the_answer_to_a_plain_invoke_is_filtered_too(app: FastAPI) -> None:
    async with client(app) as c:
        reply = await c.post("/v1/agents/echo/invoke", json={"input": f"card {CARD}"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["output"] == "echo: card [CREDIT_CARD]"


async def test_an_agent_policy_replaces_the_server_default(app: FastAPI) -> None:
    async with client(app) as c:
        reply = await c.post("/v1/agents/open/invoke", json={"input": f"card {CARD}"})
    assert reply.json()["output"] == f"echo: card {CARD}"


async def test_a_blocked_input_is_400_input_blocked_with_an_audit_row(app: FastAPI) -> None:
    async with client(app) as c:
        reply = await c.post("/v1/agents/strict/invoke", json={"input": ATTACK})
        assert reply.status_code == 400, reply.text
        error = reply.json()["error"]
        assert error["code"] == "input_blocked"
        assert error["details"]["detectors"] == ["test_injection"]
        assert ATTACK not in reply.text
        audit = services(app).audit
        await audit.flush()
        entries = (await c.get("/v1/audit", params={"limit": 500})).json()["entries"]
    [row] = [e for e in entries if e["action"] == "guard.block"]
    assert row["outcome"] == "blocked" and row["tenant_id"] == "default"
    assert row["resource"] == f"run:{error['details']['run_id']}"
    assert ATTACK not in json.dumps(row)
    [run] = (await services(app).records.list_runs("default")).items
    events = await services(app).records.list_events("default", run.id)
    [block] = [e for e in events if e.type == "guard.block"]
    assert block.data["types"] == ["injection"] and ATTACK not in json.dumps(block.data)


async def test_a_blocked_session_turn_is_400_and_the_session_goes_on(app: FastAPI) -> None:
    async with client(app) as c:
        session = (await c.post("/v1/sessions", json={"agent": "strict"})).json()["id"]
        blocked = await c.post(f"/v1/sessions/{session}/turns", json={"input": ATTACK})
        assert blocked.status_code == 400, blocked.text
        assert blocked.json()["error"]["code"] == "input_blocked"
        fine = await c.post(f"/v1/sessions/{session}/turns", json={"input": "hello"})
        assert fine.status_code == 200, fine.text
        assert fine.json()["output"] == "echo: hello"


async def test_a_streamed_answer_blocked_is_withheld_and_audited_once(app: FastAPI) -> None:
    streamed = await sse(app, "sealed", f"my card {CARD} ok")
    deltas = "".join(e["data"]["text"] for e in streamed if e["type"] == "llm.delta")
    assert deltas == "[blocked by guard]"  # the card came within the first 64 characters
    assert streamed[-1]["data"]["output"] == "[blocked by guard]"
    blocks = [e for e in streamed if e["type"] == "guard.block"]
    assert [bool(e["data"].get("stream")) for e in blocks] == [True]  # counted once
    audit = services(app).audit
    await audit.flush()
    async with client(app) as c:
        entries = (await c.get("/v1/audit", params={"limit": 500})).json()["entries"]
    assert len([e for e in entries if e["action"] == "guard.block"]) == 1


def test_a_server_policy_naming_a_missing_detector_fails_at_start(tmp_path: Path) -> None:
    raw = json.dumps({"rules": [{"detector": "nope", "surfaces": ["input"], "action": "flag"}]})
    settings = load_settings(home=tmp_path, admin_key=ADMIN, guards=raw)
    with pytest.raises(ConfigError, match="'nope'"):
        App(agents=[Agent(name="echo", model="scripted:echo")]).asgi(settings)


async def test_guard_decisions_are_counted_in_the_metrics(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, admin_key=ADMIN, log_events=False, guards=DEFAULT)
    shipyard = App(
        agents=[
            Agent(name="echo", model="scripted:echo"),
            Agent(name="strict", model="scripted:echo", guards=STRICT),
        ]
    )
    asgi = shipyard.asgi(settings)
    async with asgi.router.lifespan_context(asgi), client(asgi) as c:
        await c.post("/v1/agents/strict/invoke", json={"input": ATTACK})
        await c.post("/v1/agents/echo/invoke", json={"input": f"card {CARD}"})
        streamed = await c.post(
            "/v1/agents/echo/invoke",
            json={"input": f"card {CARD}"},
            headers={"Accept": "text/event-stream"},
        )
        assert '"stream":true' in streamed.text.replace(" ", "")  # the stream's own decision
        text = (await c.get("/metrics")).text
    assert 'shipyard_guard_flags_total{action="block",guard="test_injection"} 1.0' in text
    assert 'shipyard_guard_flags_total{action="redact",guard="test_cards"} 2.0' in text


async def test_a_tenant_policy_adds_its_rules_to_the_agents(app: FastAPI) -> None:
    rules = {"rules": [{"detector": "test_injection", "surfaces": ["input"], "action": "block"}]}
    async with client(app) as c:
        put = await c.put("/v1/tenants/acme", json={"policy": {"guards": {"settings": rules}}})
        assert put.status_code == 200, put.text
        key, _ = await app.state.keys.create("acme", ["invoke"])
        acme = {"Authorization": f"Bearer {key}"}
        blocked = await c.post("/v1/agents/echo/invoke", json={"input": ATTACK}, headers=acme)
        assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "input_blocked"
        other = await c.post("/v1/agents/echo/invoke", json={"input": ATTACK})  # tenant default
        assert other.status_code == 200, other.text
        # the server's own rules still apply to acme's runs
        card = await c.post("/v1/agents/echo/invoke", json={"input": f"c {CARD}"}, headers=acme)
        assert card.json()["output"] == "echo: c [CREDIT_CARD]"


@pytest.mark.parametrize(
    "settings",
    [
        {"rules": [{"detector": "nope", "surfaces": ["input"], "action": "block"}]},
        {"rules": [{"detector": "test_cards", "surfaces": ["output"], "action": "zap"}]},
    ],
)
async def test_a_tenant_guard_policy_that_cannot_run_is_refused(
    app: FastAPI, settings: dict[str, Any]
) -> None:
    async with client(app) as c:
        put = await c.put("/v1/tenants/acme", json={"policy": {"guards": {"settings": settings}}})
    assert put.status_code == 422, put.text
    assert put.json()["error"]["details"]["field"] == "policy.guards.settings"
