"""Artifacts over HTTP, in process, on the embedded folder store: a tool's ``ctx.artifacts.put``
end to end, uploads with their content type and size limit, streamed and checked downloads,
and another tenant's ids answering 404."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shipyard import Agent, RunContext, tool
from shipyard.app import App
from shipyard.config import load_settings
from shipyard.models.scripted import ScriptedModel
from shipyard.runtime.services import Services

OPERATOR = "sk_shp_test_admin_artifacts"


@tool
async def save_report(title: str, ctx: RunContext) -> str:
    """Write a report as an artifact of the run.

    Args:
        title: The report's title.
    """
    record = await ctx.artifacts.put(f"{title}.md", f"# {title}\n", "text/markdown")
    return record.id


def writer() -> Agent:
    calls = [{"tool_calls": [{"name": "save_report", "arguments": {"title": "q3"}}]}, "saved"]
    return Agent(name="writer", model=ScriptedModel(calls), tools=[save_report])


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = load_settings(
        home=tmp_path,
        admin_key=OPERATOR,
        log_events=False,
        metrics=False,
        tenant_cache_s=0,
        max_artifact_bytes=4096,
    )
    asgi = App(agents=[writer()]).asgi(settings)
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


async def test_a_tools_artifact_is_listed_under_its_run_and_downloads(app: FastAPI) -> None:
    async with client(app, await key_of(app, "acme")) as c:
        ran = await c.post("/v1/agents/writer/invoke", json={"input": "go"})
        assert ran.status_code == 200, ran.text
        run_id = ran.json()["run_id"]
        listed = await c.get(f"/v1/runs/{run_id}/artifacts")
        assert listed.status_code == 200, listed.text
        [item] = listed.json()["artifacts"]
        assert (item["name"], item["content_type"], item["run_id"]) == (
            "q3.md",
            "text/markdown",
            run_id,
        )
        assert item["region"] == "default"
        assert item["sha256"] == hashlib.sha256(b"# q3\n").hexdigest()
        got = await c.get(f"/v1/artifacts/{item['id']}")
        assert got.status_code == 200
        assert got.content == b"# q3\n"
        assert got.headers["content-type"].startswith("text/markdown")
        assert got.headers["x-checksum-sha256"] == item["sha256"]


async def test_upload_keeps_the_body_and_its_content_type(app: FastAPI) -> None:
    async with client(app, await key_of(app, "acme")) as c:
        body = b"\x89PNG not really" * 10
        made = await c.post(
            "/v1/artifacts",
            params={"name": "chart.png"},
            content=body,
            headers={"Content-Type": "image/png"},
        )
        assert made.status_code == 201, made.text
        info = made.json()
        assert (info["size"], info["content_type"], info["run_id"]) == (
            len(body),
            "image/png",
            None,
        )
        got = await c.get(f"/v1/artifacts/{info['id']}")
        assert (got.content, got.headers["content-type"]) == (body, "image/png")


async def test_uploads_over_the_artifact_limit_are_413(app: FastAPI) -> None:
    async with client(app, await key_of(app, "acme")) as c:
        sized = await c.post("/v1/artifacts", params={"name": "big"}, content=b"x" * 5000)
        assert sized.status_code == 413
        assert sized.json()["error"]["code"] == "payload_too_large"

        async def chunked() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b"y" * 1000

        streamed = await c.post("/v1/artifacts", params={"name": "big"}, content=chunked())
        assert streamed.status_code == 413
        missing_name = await c.post("/v1/artifacts", content=b"x")
        assert missing_name.status_code == 422


async def test_another_tenants_artifact_is_not_found(app: FastAPI) -> None:
    acme, other = await key_of(app, "acme"), await key_of(app, "globex")
    async with client(app, acme) as a, client(app, other) as o:
        made = (await a.post("/v1/artifacts", params={"name": "n"}, content=b"acme only")).json()
        stolen = await o.get(f"/v1/artifacts/{made['id']}")
        assert stolen.status_code == 404
        assert stolen.json()["error"]["code"] == "artifact_not_found"
        assert (await o.get("/v1/runs/run_nope/artifacts")).status_code == 404


async def test_changed_bytes_are_not_served_whole(app: FastAPI, tmp_path: Path) -> None:
    async with client(app, await key_of(app, "acme")) as c:
        made = (await c.post("/v1/artifacts", params={"name": "n"}, content=b"original")).json()
        [path] = [p for p in (tmp_path / "blobs").rglob(made["id"]) if "data" in p.parts]
        path.write_bytes(b"tampered")
        got = await c.get(f"/v1/artifacts/{made['id']}")
        assert got.status_code == 500
        assert got.json()["error"]["code"] == "checksum_mismatch"
        assert b"tampered" not in got.content


async def test_without_presigning_s3_is_not_needed_for_the_default(app: FastAPI) -> None:
    services: Services = app.state.services
    assert services.artifacts is not None
    assert services.artifacts.presign_s == 0
    stores: dict[str, Any] = services.artifacts.blobs.stores
    assert list(stores) == ["default"]


async def test_ranges_answer_206_with_their_bytes(app: FastAPI) -> None:
    async with client(app, await key_of(app, "acme")) as c:
        made = (await c.post("/v1/artifacts", params={"name": "d"}, content=b"0123456789")).json()
        url = f"/v1/artifacts/{made['id']}"
        part = await c.get(url, headers={"Range": "bytes=2-4"})
        assert (part.status_code, part.content) == (206, b"234")
        assert part.headers["content-range"] == "bytes 2-4/10"
        tail = await c.get(url, headers={"Range": "bytes=-3"})
        assert (tail.status_code, tail.content) == (206, b"789")
        rest = await c.get(url, headers={"Range": "bytes=7-"})
        assert (rest.status_code, rest.content) == (206, b"789")
        for ignored in ("bytes=0-1,3-4", "bytes=5-3", "items=0-1", "bytes=0-"):
            whole = await c.get(url, headers={"Range": ignored})
            assert (whole.status_code, whole.content) == (200, b"0123456789"), ignored
        past = await c.get(url, headers={"Range": "bytes=10-"})
        assert past.status_code == 416
        assert past.json()["error"]["code"] == "range_not_satisfiable"
