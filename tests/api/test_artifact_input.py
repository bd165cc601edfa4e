"""An input that references an artifact instead of carrying it, over HTTP (in process, folder
store): uploaded with ``POST /v1/artifacts``, referenced by an invoke, a session turn and a task
(``{"role": "user", "artifact_id": ...}``); the scripted echo model reads the text, the run's
record keeps the reference; another tenant's, unknown, too large and non-text artifacts are
refused with clear errors."""

from __future__ import annotations

import asyncio
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
from shipyard.runtime.worker import Worker
from tests.runtime.test_retention import running

OPERATOR = "sk_shp_test_admin_artifact_input"
LIMIT = 64
TEXT = "the quarterly report, in full"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = load_settings(
        home=tmp_path,
        admin_key=OPERATOR,
        log_events=False,
        metrics=False,
        tenant_cache_s=0,
        max_input_artifact_bytes=LIMIT,
    )
    asgi = App(agents=[Agent(name="echo", model="scripted:echo")]).asgi(settings)
    async with asgi.router.lifespan_context(asgi):
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


async def upload(c: httpx.AsyncClient, body: bytes, content_type: str = "text/plain") -> str:
    headers = {"Content-Type": content_type}
    made = await c.post("/v1/artifacts", params={"name": "doc"}, content=body, headers=headers)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def referencing(artifact_id: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "Summarize the document."},
        {"role": "user", "artifact_id": artifact_id},
    ]


async def test_an_invoke_reads_the_artifact_and_records_the_reference(app: FastAPI) -> None:
    async with client(app, await key_of(app, "acme")) as c:
        artifact = await upload(c, TEXT.encode())
        ran = await c.post("/v1/agents/echo/invoke", json={"input": referencing(artifact)})
        assert ran.status_code == 200, ran.text
        assert ran.json()["output"] == f"echo: {TEXT}"
        run = (await c.get(f"/v1/runs/{ran.json()['run_id']}")).json()
        assert run["input"][1] == {"role": "user", "artifact_id": artifact}
        assert TEXT not in str(run["input"])
        events = (await c.get(f"/v1/runs/{ran.json()['run_id']}/events")).json()["events"]
        started = next(e for e in events if e["type"] == "run.started")
        assert TEXT not in str(started["data"])


async def test_a_session_turn_reads_the_artifact_and_keeps_its_text(app: FastAPI) -> None:
    async with client(app, await key_of(app, "acme")) as c:
        artifact = await upload(c, TEXT.encode(), "text/markdown; charset=utf-8")
        session = (await c.post("/v1/sessions", json={"agent": "echo"})).json()["id"]
        turned = await c.post(
            f"/v1/sessions/{session}/turns",
            json={"input": [{"role": "user", "artifact_id": artifact}]},
        )
        assert turned.status_code == 200, turned.text
        assert turned.json()["output"] == f"echo: {TEXT}"
        history = (await c.get(f"/v1/sessions/{session}")).json()["history"]
        assert history[0] == {"role": "user", "content": TEXT}  # later turns see the text


async def test_a_task_reads_the_artifact_when_its_worker_runs_it(app: FastAPI) -> None:
    services: Services = app.state.services
    async with client(app, await key_of(app, "acme")) as c:
        artifact = await upload(c, TEXT.encode(), "application/json")
        queued = await c.post("/v1/tasks", json={"agent": "echo", "input": referencing(artifact)})
        assert queued.status_code == 202, queued.text
        task_id = queued.json()["task_id"]
        async with running(Worker(services, name="artifact-input-test")):
            task = await settled(c, task_id)
        assert (task["status"], task["output"]) == ("succeeded", f"echo: {TEXT}")


async def settled(c: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    for _ in range(400):
        found: dict[str, Any] = (await c.get(f"/v1/tasks/{task_id}")).json()
        if found["status"] in ("succeeded", "failed", "dead"):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish")


async def test_another_tenants_artifact_is_404_like_an_unknown_one(app: FastAPI) -> None:
    async with client(app, await key_of(app, "acme")) as c:
        theirs = await upload(c, TEXT.encode())
    async with client(app, await key_of(app, "globex")) as g:
        for artifact in (theirs, "art_unknown"):
            ran = await g.post("/v1/agents/echo/invoke", json={"input": referencing(artifact)})
            assert ran.status_code == 404, ran.text
            assert ran.json()["error"]["code"] == "artifact_not_found"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"x" * (LIMIT + 1), "text/plain", 413, "payload_too_large"),
        (b"\x89PNG\r\n", "image/png", 422, "invalid_input"),
        (b"caf\xe9", "text/plain", 422, "invalid_input"),  # Latin-1, not UTF-8
    ],
)
async def test_a_reference_the_run_cannot_inline_is_refused(
    app: FastAPI, body: bytes, content_type: str, status: int, code: str
) -> None:
    async with client(app, await key_of(app, "acme")) as c:
        artifact = await upload(c, body, content_type)
        ran = await c.post("/v1/agents/echo/invoke", json={"input": referencing(artifact)})
        assert ran.status_code == status, ran.text
        error = ran.json()["error"]
        assert (error["code"], error["details"]["artifact_id"]) == (code, artifact)


async def test_the_limit_counts_every_reference_of_an_input(app: FastAPI) -> None:
    async with client(app, await key_of(app, "acme")) as c:
        half = await upload(c, b"y" * (LIMIT // 2 + 1))
        twice = [{"role": "user", "artifact_id": half}, {"role": "user", "artifact_id": half}]
        ran = await c.post("/v1/agents/echo/invoke", json={"input": twice})
        assert ran.status_code == 413, ran.text


async def test_a_reference_with_content_too_is_422_at_the_edge(app: FastAPI) -> None:
    async with client(app, await key_of(app, "acme")) as c:
        mixed = [{"role": "user", "artifact_id": "art_x", "content": "and text"}]
        ran = await c.post("/v1/agents/echo/invoke", json={"input": mixed})
        assert ran.status_code == 422, ran.text
        assert ran.json()["error"]["code"] == "invalid_input"
