"""``/v1/tenants/{id}`` in process, and ``shipyard tenants`` as a real command on the same home:
policies round-trip both ways, invalid ones answer naming the field, a stale version is a 409,
a tenant's admin cannot touch another tenant, and every change says who made it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shipyard import Agent
from shipyard.app import App
from shipyard.config import load_settings
from shipyard.runtime.services import Services
from shipyard.stores.records.policy import Budgets, TenantPolicy
from tests.servers import ServerProcess

OPERATOR = "sk_shp_test_admin_tenants"
POLICY = {"region": "eu-west-1", "limits": {"requests_per_minute": 600}}


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = load_settings(
        home=tmp_path, admin_key=OPERATOR, log_events=False, metrics=False, tenant_cache_s=0
    )
    asgi = App(agents=[Agent(name="echo", model="scripted:echo")]).asgi(settings)
    async with asgi.router.lifespan_context(asgi):
        yield asgi


def cli(home: Path) -> ServerProcess:
    """``shipyard`` commands on the app's home (no server started)."""
    return ServerProcess(home=home, app=None, admin_key=OPERATOR)


def client(app: FastAPI, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://shipyard",
        headers={"Authorization": f"Bearer {key}"},
    )


async def admin_of(app: FastAPI, tenant: str, scopes: str = "admin") -> str:
    secret, _ = await app.state.keys.create(tenant, scopes.split(","))
    return str(secret)


async def put(
    c: httpx.AsyncClient, tenant: str, policy: dict[str, Any], **extra: Any
) -> httpx.Response:
    headers = extra.pop("headers", None)
    return await c.put(f"/v1/tenants/{tenant}", json={"policy": policy, **extra}, headers=headers)


async def test_put_then_get_round_trips_with_versions_and_etags(app: FastAPI) -> None:
    async with client(app, OPERATOR) as c:
        assert (await c.get("/v1/tenants/acme")).json()["error"]["code"] == "tenant_not_found"
        made = await put(c, "acme", POLICY, version=0)
        assert made.status_code == 200, made.text
        assert made.headers["etag"] == '"1"'
        body = made.json()
        assert (body["id"], body["version"], body["policy"]["region"]) == ("acme", 1, "eu-west-1")
        assert body["policy"]["limits"]["requests_per_minute"] == 600
        assert body["policy"]["budgets"] == Budgets().model_dump(mode="json")  # all unset
        read = await c.get("/v1/tenants/acme")
        assert read.json() == body and read.headers["etag"] == '"1"'


async def test_invalid_policies_answer_422_naming_the_field(app: FastAPI) -> None:
    async with client(app, OPERATOR) as c:
        cases = {
            "body.policy.limits.requests_per_minute": {"limits": {"requests_per_minute": 0}},
            "body.policy.limits.rpm": {"limits": {"rpm": 5}},
            "body.policy.retention.runs_days": {"retention": {"runs_days": "forever"}},
            "body.policy.colour": {"colour": "blue"},
            "body.policy.region": {"region": "eu\u0000"},
            "body.policy.egress.allow.0": {"egress": {"allow": [""]}},
        }
        for field, policy in cases.items():
            reply = await put(c, "acme", policy)
            assert reply.status_code == 422, (field, reply.text)
            error = reply.json()["error"]
            assert error["code"] == "invalid_input"
            assert [d["field"] for d in error["details"]] == [field]
        spaced = await put(c, "has space", {})
        assert spaced.json()["error"]["details"][0]["field"] == "path.tenant_id"
        bad_etag = await put(c, "acme", {}, headers={"If-Match": "*"})
        assert bad_etag.json()["error"]["details"][0]["field"] == "header.If-Match"
        assert (await c.get("/v1/tenants/acme")).status_code == 404  # nothing was stored


async def test_a_stale_version_or_if_match_is_a_409_policy_conflict(app: FastAPI) -> None:
    async with client(app, OPERATOR) as c:
        assert (await put(c, "acme", POLICY, version=0)).status_code == 200
        stale = await put(c, "acme", {}, version=0)
        assert stale.status_code == 409
        assert stale.json()["error"]["code"] == "policy_conflict"
        assert stale.json()["error"]["details"]["version"] == 1
        assert (await put(c, "acme", {}, headers={"If-Match": '"0"'})).status_code == 409
        fresh = await put(c, "acme", {"region": "us"}, headers={"If-Match": '"1"'})
        assert fresh.status_code == 200 and fresh.json()["version"] == 2
        blind = await put(c, "acme", {"region": "ap"})  # no version: last writer wins
        assert blind.json()["version"] == 3


async def test_a_tenants_admin_reaches_its_own_tenant_only(app: FastAPI) -> None:
    acme_admin = await admin_of(app, "acme")
    acme_reader = await admin_of(app, "acme", "invoke,read")
    async with client(app, OPERATOR) as operator:
        assert (await put(operator, "globex", POLICY)).status_code == 200
    async with client(app, acme_admin) as c:
        own = await c.get("/v1/tenants/acme")
        assert own.status_code == 200 and own.json()["version"] == 0  # keys only: the default
        assert own.json()["policy"]["region"] is None
        assert (await put(c, "acme", POLICY, version=0)).json()["version"] == 1
        for reply in (
            await c.get("/v1/tenants/globex"),
            await put(c, "globex", {}),
            await c.get("/v1/tenants/globex/changes"),
            await c.get("/v1/tenants/nobody"),
        ):
            assert reply.status_code == 403 and reply.json()["error"]["code"] == "forbidden"
    async with client(app, acme_reader) as c:
        assert (await c.get("/v1/tenants/acme")).status_code == 403
    async with client(app, OPERATOR) as operator:
        globex = (await operator.get("/v1/tenants/globex")).json()
        assert globex["version"] == 1 and globex["policy"]["region"] == "eu-west-1"


async def test_changes_say_who_changed_what_newest_first(app: FastAPI) -> None:
    acme_admin = await admin_of(app, "acme")
    async with client(app, acme_admin) as c:
        await put(c, "acme", POLICY)
        await put(c, "acme", {"region": "us"})
        listed = await c.get("/v1/tenants/acme/changes")
        page = await c.get("/v1/tenants/acme/changes", params={"limit": 1})
    ids = {k.tenant_id: k.id for k in await app.state.keys.list("acme")}
    changes = listed.json()["changes"]
    assert [(ch["version"], ch["changed_by"], ch["policy"]["region"]) for ch in changes] == [
        (2, ids["acme"], "us"),
        (1, ids["acme"], "eu-west-1"),
    ]
    assert page.json()["next_cursor"] == 2 and len(page.json()["changes"]) == 1


async def test_the_cli_and_the_api_see_each_others_changes(app: FastAPI, tmp_path: Path) -> None:
    shipyard = cli(tmp_path)
    policy_file = tmp_path / "acme.json"
    policy_file.write_text(json.dumps(POLICY))
    made = shipyard.cli("tenants", "create", "acme", "--policy-file", str(policy_file))
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["version"] == 1
    async with client(app, OPERATOR) as c:
        read = (await c.get("/v1/tenants/acme")).json()
        assert read["version"] == 1 and read["policy"]["limits"]["requests_per_minute"] == 600
        assert (await put(c, "acme", {"budgets": {"usd_per_day": 5}}, version=1)).is_success
        changes = (await c.get("/v1/tenants/acme/changes")).json()["changes"]
    assert changes[1]["changed_by"].startswith("cli")
    shown = shipyard.cli("tenants", "show", "acme")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["policy"]["budgets"]["usd_per_day"] == 5
    assert json.loads(shown.stdout)["policy"]["region"] is None  # the PUT replaced the whole
    done = shipyard.cli("tenants", "set", "acme", "region=eu", 'egress.allow=["*.example.com"]')
    assert done.returncode == 0, done.stderr
    async with client(app, OPERATOR) as c:
        read = (await c.get("/v1/tenants/acme")).json()
    assert read["version"] == 3 and read["policy"]["region"] == "eu"
    assert read["policy"]["egress"]["allow"] == ["*.example.com"]
    assert read["policy"]["budgets"]["usd_per_day"] == 5  # set keeps the other fields


async def test_the_servers_policies_follow_its_cache_setting(app: FastAPI) -> None:
    """The app's ``TenantPolicies`` is built from ``SHIPYARD_TENANT_CACHE_S`` (0 here): a change
    another process makes (straight into the store) is seen at once."""
    services: Services = app.state.services
    async with client(app, OPERATOR) as c:
        await put(c, "acme", POLICY)
    assert (await services.tenants.policy("acme")).region == "eu-west-1"
    await services.records.put_tenant_policy(
        "acme", TenantPolicy(region="us"), expected_version=1, changed_by="elsewhere"
    )
    assert (await services.tenants.policy("acme")).region == "us"


async def test_retention_periods_are_set_per_kind_through_the_api(app: FastAPI) -> None:
    periods = {"runs_days": 30, "sessions_days": 7, "memories_days": 365, "artifacts_days": 90}
    async with client(app, OPERATOR) as c:
        made = await put(c, "acme", {"retention": periods})
        assert made.status_code == 200, made.text
        retention = (await c.get("/v1/tenants/acme")).json()["policy"]["retention"]
        assert {k: retention[k] for k in periods} == periods
        assert retention["webhooks_days"] is None and retention["tasks_days"] is None
        for field in ("sessions_days", "webhooks_days", "artifacts_days"):
            refused = await put(c, "acme", {"retention": {field: 0}})
            assert refused.status_code == 422
            details = refused.json()["error"]["details"]
            assert [d["field"] for d in details] == [f"body.policy.retention.{field}"]
