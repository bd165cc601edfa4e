"""Rate limits and the cap on runs in flight, in process on the embedded state store: a tenant's
and a key's request rates answer 429 with the headers, model tokens are counted after each run
and refuse the next once spent, a tenant's runs in flight are capped, and ``SHIPYARD_LIMITS``
turns all of it off. (The same limits across two server processes on Redis: tests/e2e.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shipyard import Agent, RunContext, agent
from shipyard.app import App
from shipyard.config import load_settings

OPERATOR = "sk_shp_test_admin_limits"
gate = asyncio.Event()
entered = asyncio.Event()


@agent("gated")
async def gated(ctx: RunContext, input: object) -> str:
    """Holds its run (and its slot) until the test opens the gate."""
    entered.set()
    await gate.wait()
    return "through"


AGENTS = App(agents=[Agent(name="echo", model="scripted:echo"), gated])


@asynccontextmanager
async def started(**settings: Any) -> AsyncIterator[FastAPI]:
    base: dict[str, Any] = {
        "admin_key": OPERATOR,
        "log_events": False,
        "metrics": False,
        "tenant_cache_s": 0,
    }
    asgi = AGENTS.asgi(load_settings(**(base | settings)))
    async with asgi.router.lifespan_context(asgi):
        yield asgi


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    async with started(home=tmp_path) as asgi:
        yield asgi


def client(app: FastAPI, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://shipyard",
        headers={"Authorization": f"Bearer {key}"},
    )


async def key_of(app: FastAPI, tenant: str) -> str:
    secret, _ = await app.state.keys.create(tenant, ["invoke", "read"])
    return str(secret)


async def set_limits(app: FastAPI, tenant: str, **limits: int) -> None:
    async with client(app, OPERATOR) as c:
        reply = await c.put(f"/v1/tenants/{tenant}", json={"policy": {"limits": limits}})
    assert reply.status_code in (200, 201), reply.text


def assert_refused(reply: httpx.Response, code: str, limit: int) -> dict[str, Any]:
    assert reply.status_code == 429, reply.text
    error: dict[str, Any] = reply.json()["error"]
    assert error["code"] == code
    assert int(reply.headers["retry-after"]) >= 1
    assert reply.headers["ratelimit-limit"] == str(limit)
    assert reply.headers["ratelimit-remaining"] == "0"
    assert int(reply.headers["ratelimit-reset"]) >= 1
    return error


async def test_a_tenants_request_rate_answers_429_with_the_headers(app: FastAPI) -> None:
    await set_limits(app, "acme", requests_per_minute=2)
    acme, other = await key_of(app, "acme"), await key_of(app, "other")
    async with client(app, acme) as c:
        first, second = await c.get("/v1/agents"), await c.get("/v1/agents")
        assert (first.status_code, second.status_code) == (200, 200)
        assert first.headers["ratelimit-limit"] == "2"
        assert [first.headers["ratelimit-remaining"], second.headers["ratelimit-remaining"]] == [
            "1",
            "0",
        ]
        refused = await c.get("/v1/agents")
    error = assert_refused(refused, "rate_limited", 2)
    assert error["details"] == {"limit": "requests", "per": "tenant"}
    assert 25 <= int(refused.headers["retry-after"]) <= 30  # one request back every 30 s
    async with client(app, await key_of(app, "acme")) as c:  # every key of the tenant
        assert_refused(await c.get("/v1/agents"), "rate_limited", 2)
    async with client(app, other) as c:  # another tenant has its own
        reply = await c.get("/v1/agents")
    assert reply.status_code == 200 and "ratelimit-limit" not in reply.headers


async def test_a_refused_request_is_refused_before_its_body(app: FastAPI) -> None:
    await set_limits(app, "acme", requests_per_minute=1)
    async with client(app, await key_of(app, "acme")) as c:
        assert (await c.post("/v1/agents/echo/invoke", json={"input": "hi"})).status_code == 200
        refused = await c.post("/v1/agents/echo/invoke", json={"input": "hi"})
    assert_refused(refused, "rate_limited", 1)
    assert refused.headers["connection"] == "close"  # the body was left unread


async def test_each_key_has_its_own_request_rate(tmp_path: Path) -> None:
    async with started(home=tmp_path, limit_key_requests_per_minute=1) as app:
        one, two = await key_of(app, "acme"), await key_of(app, "acme")
        async with client(app, one) as c:
            assert (await c.get("/v1/agents")).status_code == 200
            error = assert_refused(await c.get("/v1/agents"), "rate_limited", 1)
        assert error["details"] == {"limit": "requests", "per": "key"}
        async with client(app, two) as c:
            assert (await c.get("/v1/agents")).status_code == 200
        await set_limits(app, "acme", key_requests_per_minute=5)  # the policy over the default
        async with client(app, one) as c:
            reply = await c.get("/v1/agents")
        assert reply.status_code == 200 and reply.headers["ratelimit-limit"] == "5"


async def test_spent_model_tokens_refuse_the_next_run(app: FastAPI) -> None:
    await set_limits(app, "acme", tokens_per_minute=10)
    words = "one two three four five six"
    async with client(app, await key_of(app, "acme")) as c:
        first = await c.post("/v1/agents/echo/invoke", json={"input": words})
        assert first.status_code == 200, first.text
        usage = first.json()["usage"]
        assert usage["prompt_tokens"] + usage["completion_tokens"] > 10  # counted past the limit
        refused = await c.post("/v1/agents/echo/invoke", json={"input": words})
        error = assert_refused(refused, "rate_limited", 10)
        assert error["details"]["limit"] == "tokens" and error["details"]["per"] == "minute"
        assert error["details"]["of"] == "tenant"
        run = await c.get(f"/v1/runs/{error['details']['run_id']}")
    assert run.json()["status"] == "failed"  # the refused run is on record


async def test_each_key_has_its_own_model_tokens(tmp_path: Path) -> None:
    words = {"input": "one two three four five six"}
    async with started(home=tmp_path, limit_key_tokens_per_minute=10) as app:
        one, two = await key_of(app, "acme"), await key_of(app, "acme")
        async with client(app, one) as c:
            assert (await c.post("/v1/agents/echo/invoke", json=words)).status_code == 200
            refused = await c.post("/v1/agents/echo/invoke", json=words)
        error = assert_refused(refused, "rate_limited", 10)
        assert error["details"]["of"] == "key"
        async with client(app, two) as c:  # the tenant's other key has its own tokens
            assert (await c.post("/v1/agents/echo/invoke", json=words)).status_code == 200


async def test_a_session_turn_is_refused_like_an_invoke(app: FastAPI) -> None:
    await set_limits(app, "acme", tokens_per_minute=10)
    async with client(app, await key_of(app, "acme")) as c:
        session = (await c.post("/v1/sessions", json={"agent": "echo"})).json()["id"]
        turn = f"/v1/sessions/{session}/turns"
        first = await c.post(turn, json={"input": "one two three four five six"})
        assert first.status_code == 200, first.text
        refused = await c.post(turn, json={"input": "again"})
        assert_refused(refused, "rate_limited", 10)
        history = await c.get(f"/v1/sessions/{session}")
    assert history.status_code == 200


async def test_a_tenants_runs_in_flight_are_capped(app: FastAPI) -> None:
    gate.clear()
    entered.clear()
    await set_limits(app, "acme", max_concurrent_runs=1)
    async with client(app, await key_of(app, "acme")) as c:
        running = asyncio.create_task(c.post("/v1/agents/gated/invoke", json={"input": "x"}))
        await asyncio.wait_for(entered.wait(), 30)
        refused = await c.post("/v1/agents/echo/invoke", json={"input": "hi"})
        gate.set()
        assert (await running).status_code == 200
        after = await c.post("/v1/agents/echo/invoke", json={"input": "hi"})
    error = assert_refused(refused, "too_many_runs", 1)
    assert error["details"]["limit"] == "runs_in_flight"
    assert after.status_code == 200  # the slot was given back


async def test_limits_off_count_nothing(tmp_path: Path) -> None:
    async with started(home=tmp_path, limits=False, limit_requests_per_minute=1) as app:
        async with client(app, await key_of(app, "acme")) as c:
            replies = [await c.get("/v1/agents") for _ in range(3)]
        assert [r.status_code for r in replies] == [200] * 3
        assert "ratelimit-limit" not in replies[-1].headers


async def test_a_tenants_own_body_limit_overrides_the_servers(app: FastAPI) -> None:
    await set_limits(app, "acme", max_body_bytes=2048)
    body = {"input": "x" * 3000}
    async with client(app, await key_of(app, "acme")) as c:
        refused = await c.post("/v1/agents/echo/invoke", json=body)
    assert refused.status_code == 413, refused.text
    error = refused.json()["error"]
    assert error["code"] == "payload_too_large" and error["details"] == {"max_bytes": 2048}
    assert "limits.max_body_bytes" in error["message"]
    async with client(app, await key_of(app, "other")) as c:  # the server's 1 MiB
        assert (await c.post("/v1/agents/echo/invoke", json=body)).status_code == 200
