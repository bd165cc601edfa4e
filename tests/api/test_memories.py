"""``/v1/memories`` over HTTP, in process, on the embedded SQLite + sqlite-vec store with the
deterministic test embedder: add, search with scores, list with a cursor, read, change, delete,
tenants apart, scopes, bad input; and an agent's user-scoped memory across two invocations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shipyard import Agent, Memory
from shipyard.agents.loop import RECALLED_HEADER
from shipyard.app import App
from shipyard.config import load_settings
from shipyard.models.base import SystemMessage
from shipyard.models.scripted import ScriptedModel

OPERATOR = "sk_shp_test_admin_memories"


def assistant() -> Agent:
    steps: list[str | dict[str, Any]] = [
        {"tool_calls": [{"name": "remember", "arguments": {"text": "likes jazz"}}]},
        "ok",
    ]
    return Agent(name="assistant", model=ScriptedModel(steps), memory=Memory(scope="user"))


SESSION_MODEL = ScriptedModel(
    [{"tool_calls": [{"name": "remember", "arguments": {"text": "plays the cello"}}]}, "noted"]
)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = load_settings(
        home=tmp_path,
        admin_key=OPERATOR,
        log_events=False,
        metrics=False,
        embedder="test:64",
    )
    sessioned = Agent(name="tutor", model=SESSION_MODEL, memory=Memory(scope="session"))
    asgi = App(agents=[assistant(), sessioned]).asgi(settings)
    async with asgi.router.lifespan_context(asgi):
        yield asgi


def client(app: FastAPI, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://shipyard",
        headers={"Authorization": f"Bearer {key}"},
    )


async def key_of(app: FastAPI, tenant: str, scopes: tuple[str, ...] = ("invoke", "read")) -> str:
    secret, _ = await app.state.keys.create(tenant, list(scopes))
    return str(secret)


async def test_add_search_read_change_delete(app: FastAPI) -> None:
    async with client(app, await key_of(app, "acme")) as c:
        made = await c.post(
            "/v1/memories",
            json={"text": "prefers window seats", "subject": "u1", "metadata": {"k": "v"}},
        )
        assert made.status_code == 201, made.text
        memory = made.json()
        assert memory["id"].startswith("mem_") and memory["subject"] == "u1"
        await c.post("/v1/memories", json={"text": "allergic to peanuts", "subject": "u1"})
        await c.post("/v1/memories", json={"text": "prefers aisle seats", "subject": "u2"})

        found = await c.get("/v1/memories", params={"q": "window seats", "subject": "u1"})
        assert found.status_code == 200, found.text
        hits = found.json()["memories"]
        assert hits[0]["id"] == memory["id"] and hits[0]["score"] > 0
        assert all(h["subject"] == "u1" for h in hits)
        assert found.json()["next_cursor"] is None

        got = await c.get(f"/v1/memories/{memory['id']}")
        assert got.status_code == 200 and got.json()["metadata"] == {"k": "v"}
        changed = await c.patch(
            f"/v1/memories/{memory['id']}", json={"text": "prefers aisle seats", "ttl_seconds": 60}
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["text"] == "prefers aisle seats"
        assert changed.json()["expires_at"] is not None
        assert (await c.delete(f"/v1/memories/{memory['id']}")).status_code == 204
        gone = await c.get(f"/v1/memories/{memory['id']}")
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "memory_not_found"
        assert (await c.delete(f"/v1/memories/{memory['id']}")).status_code == 404


async def test_a_list_pages_with_next_cursor(app: FastAPI) -> None:
    async with client(app, await key_of(app, "acme")) as c:
        for i in range(5):
            await c.post("/v1/memories", json={"text": f"note {i}", "agent": "assistant"})
        first = (await c.get("/v1/memories", params={"limit": 2})).json()
        assert len(first["memories"]) == 2 and first["next_cursor"]
        rest = await c.get("/v1/memories", params={"limit": 10, "cursor": first["next_cursor"]})
        assert rest.json()["next_cursor"] is None
        pages = [*first["memories"], *rest.json()["memories"]]
        # newest first by id; ids are time-ordered to the millisecond (two notes made within
        # one may come in either order), so the pages are checked against the ids' order
        ids = [m["id"] for m in pages]
        assert ids == sorted(ids, reverse=True)
        assert sorted(m["text"] for m in pages) == [f"note {i}" for i in range(5)]
        other = await c.get("/v1/memories", params={"agent": "nobody"})
        assert other.json()["memories"] == []


async def test_tenants_never_see_each_others_memories(app: FastAPI) -> None:
    async with (
        client(app, await key_of(app, "acme")) as acme,
        client(app, await key_of(app, "globex")) as globex,
    ):
        mine = (await acme.post("/v1/memories", json={"text": "the vault code is 1234"})).json()
        await globex.post("/v1/memories", json={"text": "the vault code is 1234"})
        assert (await globex.get(f"/v1/memories/{mine['id']}")).status_code == 404
        assert (
            await globex.patch(f"/v1/memories/{mine['id']}", json={"text": "x"})
        ).status_code == 404
        assert (await globex.delete(f"/v1/memories/{mine['id']}")).status_code == 404
        for params in ({"q": "vault code"}, {}):
            seen = (await globex.get("/v1/memories", params=params)).json()["memories"]
            assert len(seen) == 1 and seen[0]["id"] != mine["id"]


async def test_scopes_and_bad_input(app: FastAPI) -> None:
    async with client(app, await key_of(app, "acme", ("read",))) as reader:
        refused = await reader.post("/v1/memories", json={"text": "x"})
        assert refused.status_code == 403
        assert (await reader.get("/v1/memories")).status_code == 200
    async with client(app, await key_of(app, "acme")) as c:
        for body in ({}, {"text": ""}, {"text": "x", "ttl_seconds": 0}, {"text": "x", "extra": 1}):
            bad = await c.post("/v1/memories", json=body)
            assert bad.status_code == 422, body
            assert bad.json()["error"]["code"] == "invalid_input"
        assert (await c.get("/v1/memories", params={"limit": 0})).status_code == 422
        assert (await c.get("/v1/memories", params={"q": ""})).status_code == 422


async def test_an_agent_remembers_per_user_across_invocations(app: FastAPI) -> None:
    async with client(app, await key_of(app, "acme")) as c:
        ran = await c.post(
            "/v1/agents/assistant/invoke",
            json={"input": "I like jazz", "metadata": {"subject": "alice"}},
        )
        assert ran.status_code == 200, ran.text
        alice = (await c.get("/v1/memories", params={"subject": "alice"})).json()["memories"]
        assert [(m["text"], m["agent"]) for m in alice] == [("likes jazz", "assistant")]
        bob = (await c.get("/v1/memories", params={"subject": "bob"})).json()["memories"]
        assert bob == []


def recalled(model: ScriptedModel) -> list[str]:
    """The recalled-memory notes of each request the model got."""
    return [
        str(m.content)
        for request in model.requests
        for m in request.messages
        if isinstance(m, SystemMessage) and str(m.content).startswith(RECALLED_HEADER)
    ]


async def test_session_turns_remember_per_session_and_per_user(app: FastAPI) -> None:
    async with client(app, await key_of(app, "acme")) as c:
        made = await c.post("/v1/sessions", json={"agent": "tutor"})
        assert made.status_code == 201, made.text
        session = made.json()["id"]
        SESSION_MODEL.requests.clear()
        for _ in range(2):
            turn = await c.post(f"/v1/sessions/{session}/turns", json={"input": "the cello"})
            assert turn.status_code == 200, turn.text
        notes = recalled(SESSION_MODEL)
        assert len(notes) == 2 and "- plays the cello" in notes[0]  # turn 2's two model calls
        kept = (await c.get("/v1/memories", params={"subject": f"session:{session}"})).json()
        assert [m["text"] for m in kept["memories"]] == ["plays the cello"] * 2

        user = await c.post(
            "/v1/sessions", json={"agent": "assistant", "metadata": {"subject": "carol"}}
        )
        turn = await c.post(f"/v1/sessions/{user.json()['id']}/turns", json={"input": "jazz"})
        assert turn.status_code == 200, turn.text
        carol = (await c.get("/v1/memories", params={"subject": "carol"})).json()["memories"]
        assert [m["text"] for m in carol] == ["likes jazz"]
