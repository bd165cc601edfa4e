"""Sign-in, the cookie session, CSRF and tenant scope, in process over HTTP with cookies."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from fastapi import FastAPI

from shipyard import Agent
from shipyard.agents.context import RunRequest
from shipyard.api.keys import KeyService
from shipyard.app import App
from shipyard.config import load_settings
from shipyard.runtime.services import Services
from tests.ui.conftest import ADMIN, browser, csrf_of, error_code, sign_in


def services(app: FastAPI) -> Services:
    found: Services = app.state.services
    return found


def keys(app: FastAPI) -> KeyService:
    found: KeyService = app.state.keys
    return found


async def test_a_page_without_a_session_sends_to_sign_in(app: FastAPI) -> None:
    async with browser(app) as client:
        reply = await client.get("/ui/runs?agent=echo")
    assert reply.status_code == 303
    assert reply.headers["location"] == "/ui/login?next=%2Fui%2Fruns%3Fagent%3Decho"


async def test_sign_in_sets_an_httponly_strict_cookie_without_the_key(app: FastAPI) -> None:
    async with browser(app) as client:
        reply = await sign_in(client, ADMIN)
        assert reply.status_code == 303 and reply.headers["location"] == "/ui/"
        cookie = reply.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        assert "path=/ui" in cookie.lower()
        payload = cookie.split("=", 1)[1].split(".", 1)[0]
        session = json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))
        assert ADMIN not in json.dumps(session)  # the key's hash, never the key
        assert set(session) == {"key_sha256", "csrf"}
        page = await client.get("/ui/")
    assert page.status_code == 200 and "Overview" in page.text


async def test_a_wrong_key_or_a_missing_csrf_token_is_refused(app: FastAPI) -> None:
    async with browser(app) as client:
        wrong = await sign_in(client, "sk_shp_not_a_key")
        assert wrong.status_code == 401 and "not valid" in wrong.text
        assert (await client.get("/ui/")).status_code == 303
        forged = await client.post("/ui/login", data={"key": ADMIN, "csrf": "guess"})
        assert forged.status_code == 403
        assert error_code(forged) == "forbidden"
        assert (await client.get("/ui/")).status_code == 303


async def test_every_action_needs_the_sessions_csrf_token(app: FastAPI) -> None:
    async with browser(app) as client:
        await sign_in(client, ADMIN)
        token = csrf_of((await client.get("/ui/keys")).text)
        no_token = await client.post("/ui/keys", data={"name": "x", "scopes": "read"})
        wrong = await client.post("/ui/keys", data={"name": "x", "scopes": "read", "csrf": "x"})
        assert no_token.status_code == wrong.status_code == 403
        assert [k.name for k in await keys(app).list("default")] == ["bootstrap"]
        made = await client.post("/ui/keys", data={"name": "ci", "scopes": "read", "csrf": token})
        assert made.status_code == 200 and 'data-testid="new-secret"' in made.text
        assert sorted(k.name for k in await keys(app).list("default")) == ["bootstrap", "ci"]
        logout = await client.post("/ui/logout", data={"csrf": "wrong"})
        assert logout.status_code == 403
        assert (await client.post("/ui/logout", data={"csrf": token})).status_code == 303
        assert (await client.get("/ui/")).status_code == 303


async def test_a_read_only_key_sees_its_tenant_and_no_admin_action(app: FastAPI) -> None:
    secret, _ = await keys(app).create("globex", ["read"], name="viewer")
    await services(app).invoker.invoke(RunRequest(tenant_id="default", agent="echo", input="a"))
    theirs = await services(app).invoker.invoke(
        RunRequest(tenant_id="globex", agent="echo", input="b")
    )
    async with browser(app) as client:
        assert (await sign_in(client, secret)).status_code == 303
        runs = await client.get("/ui/runs")
        assert runs.status_code == 200
        assert runs.text.count("data-run=") == 1 and theirs.run_id in runs.text
        assert ">Keys<" not in runs.text and ">Audit<" not in runs.text
        assert (await client.get("/ui/runs?tenant=default")).status_code == 403
        assert (await client.get("/ui/keys")).status_code == 403
        assert (await client.get("/ui/audit")).status_code == 403
        token = csrf_of(runs.text)
        task, _ = await services(app).tasks.submit("globex", agent="echo", input="x", metadata={})
        page = await client.get(f"/ui/tasks/{task.id}")
        assert "Cancel" not in page.text
        cancel = await client.post(f"/ui/tasks/{task.id}/cancel", data={"csrf": token})
        assert cancel.status_code == 403
        assert (await services(app).tasks.get("globex", task.id)).status != "cancelled"


async def test_the_operator_views_any_tenant(app: FastAPI) -> None:
    theirs = await services(app).invoker.invoke(
        RunRequest(tenant_id="globex", agent="echo", input="b")
    )
    async with browser(app) as client:
        await sign_in(client, ADMIN)
        own = await client.get("/ui/runs")
        assert theirs.run_id not in own.text
        other = await client.get("/ui/runs?tenant=globex")
        assert other.status_code == 200 and theirs.run_id in other.text
        assert f'href="/ui/runs/{theirs.run_id}?tenant=globex"' in other.text
        bad = await client.get("/ui/runs?tenant=a%20b")
        assert bad.status_code == 422


async def test_a_revoked_key_signs_its_session_out(app: FastAPI) -> None:
    secret, record = await keys(app).create("default", ["read"])
    async with browser(app) as client:
        await sign_in(client, secret)
        assert (await client.get("/ui/")).status_code == 200
        await keys(app).revoke(record.id)
        reply = await client.get("/ui/")
    assert reply.status_code == 303 and reply.headers["location"].startswith("/ui/login")


async def test_sign_in_goes_back_only_to_the_dashboard(app: FastAPI) -> None:
    async with browser(app) as client:
        form = await client.get("/ui/login?next=https://evil.example/")
        token = csrf_of(form.text)
        for target, expected in [("https://evil.example/", "/ui/"), ("//evil", "/ui/"),
                                 ("/ui/tasks", "/ui/tasks")]:  # fmt: skip
            reply = await client.post(
                "/ui/login", data={"key": ADMIN, "csrf": token, "next": target}
            )
            assert reply.headers["location"] == expected
            token = csrf_of((await client.get("/ui/login")).text)


async def test_a_dashboard_cookie_does_not_open_the_api(app: FastAPI) -> None:
    async with browser(app) as client:
        await sign_in(client, ADMIN)
        assert (await client.get("/ui/runs")).status_code == 200
        assert (await client.get("/v1/runs")).status_code == 401


async def test_the_dashboard_can_be_turned_off(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, admin_key=ADMIN, log_events=False, ui=False)
    asgi = App(agents=[Agent(name="echo", model="scripted:echo")]).asgi(settings)
    async with asgi.router.lifespan_context(asgi), browser(asgi) as client:
        assert (await client.get("/ui/login")).status_code == 404


async def test_every_asset_comes_from_the_server_itself(app: FastAPI) -> None:
    """Offline: the pages load no script, style or image from another site (no CDN)."""
    async with browser(app) as client:
        await sign_in(client, ADMIN)
        html = (await client.get("/ui/")).text + (await client.get("/ui/login")).text
        assets = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
        assert len(assets) >= 5 and all(a.startswith("/ui/static/") for a in assets), assets
        for asset in set(assets):
            reply = await client.get(asset)
            assert reply.status_code == 200 and len(reply.content) > 100, asset
