"""The dashboard in process on a real SQLite record store, driven over HTTP with cookies."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from shipyard import Agent
from shipyard.app import App
from shipyard.config import load_settings

ADMIN = "sk_shp_test_admin_ui_" + "0" * 8
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
ERROR = re.compile(r'data-error="([a-z_]+)"')


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = load_settings(home=tmp_path, admin_key=ADMIN, log_events=False, metrics=False)
    asgi = App(agents=[Agent(name="echo", model="scripted:echo")]).asgi(settings)
    async with asgi.router.lifespan_context(asgi):
        yield asgi


def browser(app: FastAPI) -> httpx.AsyncClient:
    """A client that keeps cookies, like a browser (no bearer header)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shipyard")


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, html[:500]
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    form = await client.get("/ui/login")
    return await client.post(
        "/ui/login", data={"key": key, "csrf": csrf_of(form.text), "next": "/ui/"}
    )


def error_code(reply: httpx.Response) -> str:
    """The code an error page shows (the dashboard answers errors as HTML pages)."""
    assert reply.headers["content-type"].startswith("text/html"), reply.text[:300]
    found = ERROR.search(reply.text)
    assert found is not None, reply.text[:500]
    return found.group(1)
