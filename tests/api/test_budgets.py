"""``/v1/budgets`` and ``/v1/usage`` in process, on the embedded stores: an admin sets budgets
(its own tenant only; bad input is a 422 naming the field), every answer carries what is left,
a run the budget cannot cover is a 402 before any model call, and usage is summed from the
records by agent, model, tenant and key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from shipyard import Agent
from shipyard.app import App
from shipyard.config import load_settings
from shipyard.models import prices
from shipyard.models.scripted import ScriptedModel

OPERATOR = "sk_shp_test_admin_budgets"
CHEAP = ScriptedModel(echo=True, name="scripted:cheap")  # $0.001 a token
DEAR = ScriptedModel(echo=True, name="scripted:dear")  # $0.01 a token


@pytest.fixture(autouse=True)
def priced() -> Iterator[None]:
    prices.register_price("scripted:cheap", 1000, 1000)
    prices.register_price("scripted:dear", 10_000, 10_000)
    yield
    for name in ("scripted:cheap", "scripted:dear"):
        prices.PRICES.pop(name, None)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = load_settings(
        home=tmp_path,
        admin_key=OPERATOR,
        log_events=False,
        metrics=False,
        tenant_cache_s=0,
        budget_output_tokens=10,
    )
    agents = [Agent(name="cheap", model=CHEAP), Agent(name="dear", model=DEAR)]
    asgi = App(agents=agents).asgi(settings)
    async with asgi.router.lifespan_context(asgi):
        yield asgi


def client(app: FastAPI, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://shipyard",
        headers={"Authorization": f"Bearer {key}"},
    )


async def key_of(app: FastAPI, tenant: str, scopes: str = "admin") -> tuple[str, str]:
    secret, record = await app.state.keys.create(tenant, scopes.split(","))
    return str(secret), record.id


async def invoke(c: httpx.AsyncClient, agent: str, text: str = "one two three") -> httpx.Response:
    return await c.post(f"/v1/agents/{agent}/invoke", json={"input": text})


async def test_budgets_are_set_read_and_shown_in_every_answer(app: FastAPI) -> None:
    admin, _ = await key_of(app, "acme")
    async with client(app, admin) as c:
        assert "budget-remaining-usd" not in (await c.get("/v1/budgets")).headers
        budgets = {"usd_per_day": 1.0, "tokens_per_month": 500, "reserve_tokens": 100}
        put = await c.put("/v1/budgets/acme", json=budgets)
        assert put.status_code == 200, put.text
        assert put.json()["budgets"]["usd_per_day"] == 1.0
        ran = await invoke(c, "cheap")
        assert ran.status_code == 200, ran.text
        spent = ran.json()["usage"]["cost_usd"]
        assert spent > 0
        assert float(ran.headers["budget-remaining-usd"]) == pytest.approx(1.0 - spent)
        tokens = ran.json()["usage"]["prompt_tokens"] + ran.json()["usage"]["completion_tokens"]
        assert int(ran.headers["budget-remaining-tokens"]) == 500 - tokens
        got = (await c.get("/v1/budgets")).json()
    standing = {(s["scope"], s["period"], s["unit"]): s for s in got["standing"]}
    assert got["enabled"] and got["tenant_id"] == "acme"
    day = standing["tenant", "day", "usd"]
    assert (day["limit"], day["held"]) == (1.0, 0.0)
    assert day["spent"] == pytest.approx(spent) and day["remaining"] == pytest.approx(1 - spent)
    assert standing["tenant", "month", "tokens"]["spent"] == tokens


async def test_only_an_admin_of_the_tenant_changes_its_budgets(app: FastAPI) -> None:
    admin, _ = await key_of(app, "acme")
    reader, _ = await key_of(app, "acme", "invoke,read")
    async with client(app, admin) as c:
        other = await c.put("/v1/budgets/globex", json={"usd_per_day": 1})
        assert other.status_code == 403, other.text
        bad = await c.put("/v1/budgets/acme", json={"usd_per_day": -1, "policy": "pray"})
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "invalid_input"
        assert "usd_per_day" in bad.text and "policy" in bad.text
    async with client(app, reader) as c:
        assert (await c.put("/v1/budgets/acme", json={"usd_per_day": 1})).status_code == 403
    async with client(app, OPERATOR) as c:
        assert (await c.put("/v1/budgets/globex", json={"usd_per_day": 1})).status_code == 200
        assert (await c.get("/v1/tenants/globex")).json()["policy"]["budgets"]["usd_per_day"] == 1


async def test_a_run_the_budget_cannot_cover_is_402_before_any_model_call(app: FastAPI) -> None:
    admin, _ = await key_of(app, "acme")
    async with client(app, admin) as c:
        await c.put("/v1/budgets/acme", json={"usd_per_day": 0.05, "run_usd": 0.1})
        before = len(CHEAP.requests)
        refused = await invoke(c, "cheap")
        assert refused.status_code == 402, refused.text
        error = refused.json()["error"]
        assert error["code"] == "budget_exceeded" and error["details"]["scope"] == "tenant"
        assert len(CHEAP.requests) == before
        assert float(refused.headers["budget-remaining-usd"]) == pytest.approx(0.05)


async def test_a_keys_budget_applies_to_its_runs(app: FastAPI) -> None:
    admin, _ = await key_of(app, "acme")
    capped, capped_id = await key_of(app, "acme", "invoke,read")
    async with client(app, admin) as c:
        budgets = {"keys": {capped_id: {"tokens_per_day": 3}}, "reserve_tokens": 2}
        assert (await c.put("/v1/budgets/acme", json=budgets)).status_code == 200
        assert (await invoke(c, "cheap")).status_code == 200  # the admin key has no budget
    async with client(app, capped) as c:
        refused = await invoke(c, "cheap")  # the call's worst case passes the key's 3 tokens
    assert refused.status_code == 402, refused.text
    assert refused.json()["error"]["details"]["scope"] == f"key:{capped_id}"


async def test_usage_is_summed_from_the_records(app: FastAPI) -> None:
    admin, admin_id = await key_of(app, "acme")
    other, other_id = await key_of(app, "acme", "invoke,read")
    async with client(app, admin) as c:
        costs = [(await invoke(c, "cheap")).json()["usage"]["cost_usd"] for _ in range(2)]
        costs.append((await invoke(c, "dear")).json()["usage"]["cost_usd"])
    async with client(app, other) as c:
        costs.append((await invoke(c, "dear", "a b")).json()["usage"]["cost_usd"])
        by_agent = (await c.get("/v1/usage", params={"group_by": "agent"})).json()
        by_model = (await c.get("/v1/usage?group_by=model&period=month")).json()
        by_key = (await c.get("/v1/usage?group_by=key")).json()
        assert (await c.get("/v1/usage?group_by=colour")).status_code == 422
    await app.state.services.recorder.durable()
    assert by_agent["total_usd"] == pytest.approx(sum(costs))
    assert by_agent["saved_usd"] == 0.0  # no cache here (tests/stores/records/test_usage.py)
    agents = {g["value"]: g for g in by_agent["groups"]}
    assert agents["cheap"]["runs"] == 2 and agents["dear"]["runs"] == 2
    assert agents["dear"]["cost_usd"] == pytest.approx(costs[2] + costs[3])
    assert by_agent["groups"][0]["value"] == "dear"  # costliest first
    models = {g["value"]: g for g in by_model["groups"]}
    assert models["scripted:cheap"]["calls"] == 2
    assert models["scripted:cheap"]["cost_usd"] == pytest.approx(costs[0] + costs[1])
    keys = {g["value"]: g["cost_usd"] for g in by_key["groups"]}
    assert keys == pytest.approx({admin_id: sum(costs[:3]), other_id: costs[3]})
    async with client(app, OPERATOR) as c:
        await invoke(c, "cheap")
        tenants = (await c.get("/v1/usage?group_by=tenant")).json()["groups"]
    assert {g["value"] for g in tenants} == {"acme", "default"}
