"""``GET /v1/runs/{id}``, ``/v1/tasks/{id}`` and ``/v1/sessions/{id}`` of a row an older version
stored and that no JSON answer can carry as it is (a lone surrogate, nesting deeper than the
serialiser takes) serve it with those parts replaced (``shipyard.stores.storable.servable``),
never a 500; on SQLite and PostgreSQL records, the rows spoiled with SQL behind the store's
back (as in ``tests/stores/records/test_unreadable_rows``, which also covers the listings: they
are not read here, since a logger used once is cached and that test captures the store's log)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shipyard import Agent
from shipyard.app import App
from shipyard.config import load_settings
from shipyard.stores.storable import READ_MAX_DEPTH
from tests.stores.records.test_unreadable_rows import SPOILED, _sql

ADMIN = "sk_shp_test_admin_unreadable"
SERVED: dict[str, Any] = {
    "surrogate": {"k": "\ufffd"},
    "nul": {"k": "a\u0000b"},  # JSON carries a NUL: served as stored
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'records.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def app(tmp_path: Path, database_url: str) -> AsyncIterator[FastAPI]:
    settings = load_settings(
        home=tmp_path, admin_key=ADMIN, database_url=database_url, log_events=False
    )
    asgi = App(agents=[Agent(name="echo", model="scripted:echo")]).asgi(settings)
    async with asgi.router.lifespan_context(asgi):
        yield asgi


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://shipyard",
        headers={"Authorization": f"Bearer {ADMIN}"},
    ) as client:
        yield client


def depth(value: Any) -> int:
    levels = 0
    while isinstance(value, dict) and value:
        value, levels = value["a"], levels + 1
    return levels


@pytest.mark.parametrize("spoil", sorted(SPOILED))
async def test_a_spoiled_row_is_served_with_its_unservable_parts_replaced(
    client: httpx.AsyncClient, database_url: str, spoil: str
) -> None:
    run = (await client.post("/v1/agents/echo/invoke", json={"input": "hi"})).json()["run_id"]
    task = (await client.post("/v1/tasks", json={"agent": "echo", "input": "hi"})).json()
    session = (await client.post("/v1/sessions", json={"agent": "echo"})).json()["id"]
    json = "::json" if database_url.startswith("postgresql") else ""  # a task shows no metadata
    spoiled = {"runs": ("metadata", run), "tasks": ("error", task["task_id"])}
    spoiled["sessions"] = ("metadata", session)
    for table, (column, row) in spoiled.items():
        statement = f"UPDATE {table} SET {column} = $1{json} WHERE id = $2"
        await _sql(database_url, statement, SPOILED[spoil], row)
    for table, (column, row) in spoiled.items():
        reply = await client.get(f"/v1/{table}/{row}")
        assert reply.status_code == 200, (table, reply.text)
        served = reply.json()[column]
        if spoil == "deep":  # the levels past the limit are one string saying so
            assert depth(served) == READ_MAX_DEPTH - 1, table
        else:
            assert served == SERVED[spoil], table
