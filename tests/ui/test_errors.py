"""The dashboard's errors are pages (the API's stay JSON), and failed sign-ins are throttled."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Mount

from shipyard import Agent
from shipyard.app import App
from shipyard.config import load_settings
from tests.ui.conftest import ADMIN, browser, csrf_of, error_code, sign_in

FAILURES = 3


def dashboard(app: FastAPI) -> FastAPI:
    found = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == "/ui")
    assert isinstance(found, FastAPI)
    return found


async def test_errors_under_ui_are_pages_and_the_api_keeps_json(app: FastAPI) -> None:
    async def boom() -> None:
        raise RuntimeError("a bug")

    dashboard(app).add_api_route("/boom", boom)
    async with browser(app) as client:
        await sign_in(client, ADMIN)
        missing = await client.get("/ui/no-such-page")
        no_run = await client.get("/ui/runs/run_nope")
        other = await client.get("/ui/runs?tenant=a%20b")
        crashed = await client.get("/ui/boom")
        api = await client.get("/v1/runs/run_nope", headers={"Authorization": f"Bearer {ADMIN}"})
    assert missing.status_code == 404 and error_code(missing) == "not_found"
    assert no_run.status_code == 404 and error_code(no_run) == "run_not_found"
    assert "no run &#39;run_nope&#39;" in no_run.text and 'href="/ui/"' in no_run.text
    assert other.status_code == 422 and error_code(other) == "invalid_input"
    assert crashed.status_code == 500 and error_code(crashed) == "internal_error"
    assert "a bug" not in crashed.text  # the traceback goes to the log, not the page
    assert api.status_code == 404 and api.json()["error"]["code"] == "run_not_found"


async def test_a_read_keys_forbidden_page_is_a_403_page(app: FastAPI) -> None:
    secret, _ = await app.state.keys.create("globex", ["read"], name="viewer")
    async with browser(app) as client:
        await sign_in(client, secret)
        keys = await client.get("/ui/keys")
        tenant = await client.get("/ui/runs?tenant=default")
    assert keys.status_code == 403 and error_code(keys) == "forbidden"
    assert tenant.status_code == 403 and "own tenant only" in tenant.text


@pytest.fixture
async def strict(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = load_settings(
        home=tmp_path,
        admin_key=ADMIN,
        log_events=False,
        metrics=False,
        ui_signin_failures=FAILURES,
        ui_signin_window_s=600,
    )
    asgi = App(agents=[Agent(name="echo", model="scripted:echo")]).asgi(settings)
    async with asgi.router.lifespan_context(asgi):
        yield asgi


async def test_failed_sign_ins_are_throttled_by_address(strict: FastAPI) -> None:
    async with browser(strict) as client:
        for _ in range(FAILURES):
            assert (await sign_in(client, "sk_shp_guess")).status_code == 401
        refused = await sign_in(client, "sk_shp_guess")
        good_too = await sign_in(client, ADMIN)  # even the right key waits: no oracle
        assert refused.status_code == good_too.status_code == 429
        assert error_code(refused) == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
    elsewhere = httpx_client_from(strict, "10.0.0.2")
    async with elsewhere as client:  # another address has its own count
        assert (await sign_in(client, ADMIN)).status_code == 303


async def test_a_good_sign_in_spends_nothing(strict: FastAPI) -> None:
    async with browser(strict) as client:
        for _ in range(FAILURES + 2):
            assert (await sign_in(client, ADMIN)).status_code == 303
        form = await client.get("/ui/login")
        assert form.status_code == 200 and csrf_of(form.text)


def httpx_client_from(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://shipyard")
