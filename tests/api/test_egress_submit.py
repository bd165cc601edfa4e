"""``POST /v1/tasks`` with a ``webhook_url`` the egress policy denies: 422 ``egress_denied``,
the message and ``details.rule`` naming the rule, and no task queued."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from shipyard import Agent
from shipyard.app import App
from shipyard.config import load_settings

ADMIN = "sk_shp_test_admin_egress"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = load_settings(
        home=tmp_path,
        admin_key=ADMIN,
        log_events=False,
        metrics=False,
        webhook_hosts="*.hooks.example",
        egress_schemes="https",
    )
    asgi = App(agents=[Agent(name="echo", model="scripted:echo")]).asgi(settings)
    async with (
        asgi.router.lifespan_context(asgi),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi),
            base_url="http://shipyard",
            headers={"Authorization": f"Bearer {ADMIN}"},
        ) as c,
    ):
        yield c


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("https://evil.test/hook", "webhook.hosts"),
        ("http://a.hooks.example/hook", "webhook.schemes"),
        ("https://user:secret@a.hooks.example/hook", "url"),
        ("https://10.0.0.1/hook", "webhook.hosts"),
    ],
)
async def test_a_denied_webhook_url_is_a_422_naming_the_rule(
    client: httpx.AsyncClient, url: str, rule: str
) -> None:
    reply = await client.post("/v1/tasks", json={"agent": "echo", "input": "x", "webhook_url": url})
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["code"] == "egress_denied"
    assert error["details"] == {"field": "webhook_url", "rule": rule}
    assert error["message"].startswith("webhook_url: ") and "secret" not in error["message"]
    if rule != "url":
        assert f"rule: {rule}" in error["message"]
    listed = await client.get("/v1/tasks")
    assert listed.json()["tasks"] == []


async def test_an_internal_address_under_an_allowed_host_rule_is_refused(
    tmp_path: Path,
) -> None:
    settings = load_settings(home=tmp_path / "open", admin_key=ADMIN, log_events=False)
    asgi = App(agents=[Agent(name="echo", model="scripted:echo")]).asgi(settings)
    async with (
        asgi.router.lifespan_context(asgi),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi),
            base_url="http://shipyard",
            headers={"Authorization": f"Bearer {ADMIN}"},
        ) as c,
    ):
        body = {"agent": "echo", "input": "x", "webhook_url": "http://0xa9fea9fe/latest"}
        reply = await c.post("/v1/tasks", json=body)
    assert reply.status_code == 422
    error = reply.json()["error"]
    assert error["details"] == {"field": "webhook_url", "rule": "address"}
    assert "cloud metadata" in error["message"] and "SHIPYARD_WEBHOOK_ALLOW" in error["message"]
