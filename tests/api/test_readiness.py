"""``/readyz`` checks the memory store too (pgvector): ready while it answers, 503 naming it
when its database is gone; the start pings it like the other stores (``check_stores``; the
unreachable case of ``shipyard serve`` is in ``tests/e2e/test_cli.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from shipyard import Agent
from shipyard.app import App
from shipyard.config import load_settings
from tests.conftest import admin_sql, fresh_database
from tests.stores.memory.conftest import PGVECTOR_ADMIN_URL

pytestmark = pytest.mark.pgvector


@pytest.fixture
def memory_url() -> Iterator[str]:
    """A database of its own: the test drops it."""
    yield from fresh_database(PGVECTOR_ADMIN_URL, "shipyard_ready", "PostgreSQL + pgvector")


@pytest.fixture
async def app(tmp_path: Path, memory_url: str) -> AsyncIterator[FastAPI]:
    settings = load_settings(
        home=tmp_path, log_events=False, metrics=False, memory_url=memory_url, embedder="test:8"
    )
    asgi = App(agents=[Agent(name="echo", model="scripted:echo")]).asgi(settings)
    async with asgi.router.lifespan_context(asgi):
        yield asgi


async def test_readyz_answers_for_the_memory_store(app: FastAPI, memory_url: str) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shipyard") as c:
        ready = await c.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {
            "records": "ok",
            "state": "ok",
            "broker": "ok",
            "memory": "ok",
        }
        name = memory_url.rsplit("/", 1)[1]
        await admin_sql(f'DROP DATABASE "{name}" WITH (FORCE)', PGVECTOR_ADMIN_URL)
        gone = await c.get("/readyz")
        assert gone.status_code == 503, gone.text
        error = gone.json()["error"]
        assert (error["code"], error["message"]) == (
            "not_ready",
            "the memory store does not answer",
        )
