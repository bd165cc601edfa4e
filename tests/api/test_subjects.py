"""``DELETE /v1/subjects/{id}``: a subject's data erased from every store, proven by reading the
stores directly.

One subject's marker string is planted everywhere through the API — a run's input, output and
events, an artifact (record and bytes), a session's history in the state store, a task and its
run — beside another subject's marker and the same subject in another tenant. After the
erasure the first marker is found in no row, key or blob; the others are all still there. On
the embedded stores (SQLite, SQLite state, a folder) and on the servers (PostgreSQL, Redis,
S3 on SeaweedFS).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apsw
import httpx
import pytest
from fastapi import FastAPI

from shipyard import Agent, RunContext, agent
from shipyard.app import App
from shipyard.config import Settings, load_settings
from shipyard.runtime.services import Services
from shipyard.runtime.worker import Worker
from shipyard.stores.records.audit_base import AuditQuery
from tests.lifecycle_search import (
    blob_text,
    folder_text,
    postgres_text,
    redis_text,
    sqlite_text,
)
from tests.runtime.test_retention import running
from tests.stores.blobs.conftest import S3_ENDPOINTS, S3_KEYS, s3_store
from tests.stores.memory.conftest import pgvector_url
from tests.stores.state.conftest import REDIS_URL, redis_store

OPERATOR = "sk_shp_test_admin_subjects"
__all__ = ["pgvector_url"]  # the fixture, for the servers' memory store


@agent("maker")
async def maker(ctx: RunContext, input: object) -> str:
    """Keeps an artifact holding its input, and answers with it."""
    await ctx.artifacts.put("notes.txt", f"notes on {input}", "text/plain")
    return f"made {input}"


APP = App(agents=[maker, Agent(name="echo", model="scripted:echo")])


@dataclass
class Deployment:
    app: FastAPI
    settings: Settings
    servers: bool

    @property
    def services(self) -> Services:
        found: Services = self.app.state.services
        return found

    async def everything(self) -> dict[str, str]:
        """Each store's whole content as text, read around Shipyard."""
        home = self.settings.home
        if self.servers:
            assert self.settings.database_url is not None
            return {
                "records": await postgres_text(self.settings.database_url),
                "state": await redis_text(REDIS_URL, "shipyard:*"),
                "blobs": await blob_text(self.services),
                "broker": sqlite_text(home / "broker.db"),
                "memory": await postgres_text(self.settings.resolved_memory_url),
            }
        return {
            "records": sqlite_text(home / "shipyard.db"),
            "state": sqlite_text(home / "state.db"),
            "blobs": folder_text(home / "blobs"),
            "broker": sqlite_text(home / "broker.db"),
            "memory": sqlite_text(home / "memory.db", library=apsw),
        }


@pytest.fixture(
    params=[
        "embedded",
        pytest.param(
            "servers",
            marks=[pytest.mark.postgres, pytest.mark.redis, pytest.mark.s3, pytest.mark.pgvector],
        ),
    ]
)
def options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The settings naming the stores: none (embedded), or the servers'."""
    if request.param == "embedded":
        return {"embedder": "test:8"}
    return {
        "embedder": "test:8",
        "memory_url": request.getfixturevalue("pgvector_url"),
        "database_url": request.getfixturevalue("postgres_url"),
        "state_url": REDIS_URL,
        "blob_url": f"s3://er{secrets.token_hex(4)}?account=123456789012"
        f"&endpoint={S3_ENDPOINTS['eu-a']}",
        "blob_region": "eu-a",
    }


@pytest.fixture
async def deployment(
    options: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Deployment]:
    servers = "database_url" in options
    if servers:
        await (await redis_store()).close()  # skips (or fails) when Redis is down
        await (await s3_store("eu-a")).close()  # or SeaweedFS
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEYS["access_key_id"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_KEYS["secret_access_key"])
    settings = load_settings(
        home=tmp_path,
        admin_key=OPERATOR,
        log_events=False,
        metrics=False,
        tenant_cache_s=0,
        **options,
    )
    asgi = APP.asgi(settings)
    async with asgi.router.lifespan_context(asgi):
        yield Deployment(asgi, settings, servers)


def client(app: FastAPI, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://shipyard",
        headers={"Authorization": f"Bearer {key}"},
    )


async def key_of(app: FastAPI, tenant: str, *scopes: str) -> str:
    secret, _ = await app.state.keys.create(tenant, list(scopes or ("invoke", "read")))
    return str(secret)


async def plant(c: httpx.AsyncClient, subject: str, marker: str) -> dict[str, str]:
    """The subject's run (with an artifact), session turn, task and memory, each carrying
    ``marker``."""
    meta = {"subject": subject}
    kept = await c.post("/v1/memories", json={"text": f"{marker} takes tea", "subject": subject})
    assert kept.status_code == 201, kept.text
    ran = await c.post("/v1/agents/maker/invoke", json={"input": marker, "metadata": meta})
    assert ran.status_code == 200, ran.text
    made = await c.post("/v1/sessions", json={"agent": "echo", "metadata": meta})
    assert made.status_code == 201, made.text
    session = made.json()["id"]
    turned = await c.post(f"/v1/sessions/{session}/turns", json={"input": f"{marker} hi"})
    assert turned.status_code == 200, turned.text
    queued = await c.post("/v1/tasks", json={"agent": "echo", "input": marker, "metadata": meta})
    assert queued.status_code == 202, queued.text
    return {"run": ran.json()["run_id"], "session": session, "task": queued.json()["task_id"]}


async def settled(c: httpx.AsyncClient, task_id: str) -> None:
    for _ in range(400):
        found = (await c.get(f"/v1/tasks/{task_id}")).json()
        if found["status"] in ("succeeded", "failed", "dead"):
            assert found["status"] == "succeeded", found
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish")


async def test_erasing_a_subject_leaves_its_marker_in_no_store(deployment: Deployment) -> None:
    app = deployment.app
    alice, bob, elsewhere = (f"MARK{secrets.token_hex(8)}" for _ in range(3))
    acme = await key_of(app, "acme")
    async with client(app, acme) as c, client(app, await key_of(app, "globex")) as g:
        async with running(Worker(deployment.services, name="eraser-test")):
            mine = await plant(c, "alice", alice)
            theirs = await plant(c, "bob", bob)
            other = await plant(g, "alice", elsewhere)  # the same subject in another tenant
            for tenant_client, ids in ((c, mine), (c, theirs), (g, other)):
                await settled(tenant_client, ids["task"])

        before = await deployment.everything()
        for store in ("records", "state", "blobs", "memory"):
            assert alice in before[store], store  # the marker was really there
        async with client(app, await key_of(app, "acme", "admin")) as admin:
            erased = await admin.delete("/v1/subjects/alice")
        assert erased.status_code == 200, erased.text
        receipt = erased.json()
        by_store = {s["store"]: s for s in receipt["stores"]}
        assert set(by_store) == {"artifacts", "session_history", "memories", "records"}
        assert by_store["memories"]["deleted"] == 1
        assert by_store["artifacts"]["deleted"] == 1
        assert by_store["session_history"]["deleted"] >= 1
        items = by_store["records"]["items"]
        assert items["runs"] == 3 and items["tasks"] == 1 and items["sessions"] == 1
        assert items["run_events"] > 0 and items["task_transitions"] > 0
        assert receipt["tenant_id"] == "acme" and receipt["subject"] == "alice"

        after = await deployment.everything()
        for store, text in after.items():
            assert alice not in text, f"the erased subject's marker is still in the {store}"
        for store in ("records", "state", "blobs", "memory"):
            assert bob in after[store], store  # another subject: untouched
            assert elsewhere in after[store], store  # the same subject of another tenant
        assert (await c.get(f"/v1/runs/{mine['run']}")).status_code == 404
        assert (await c.get(f"/v1/sessions/{mine['session']}")).status_code == 404
        assert (await c.get(f"/v1/tasks/{mine['task']}")).status_code == 404


async def test_an_erasure_is_audited_without_the_subject(deployment: Deployment) -> None:
    app = deployment.app
    began = datetime.now(UTC)  # the database may hold other tests' erasures
    async with client(app, await key_of(app, "acme")) as c:
        ran = await c.post(
            "/v1/agents/maker/invoke", json={"input": "x", "metadata": {"subject": "carol"}}
        )
        assert ran.status_code == 200
    async with client(app, await key_of(app, "acme", "admin")) as admin:
        first = await admin.delete("/v1/subjects/carol")
        assert first.status_code == 200
        again = await admin.delete("/v1/subjects/carol")  # harmless: nothing left
        assert again.status_code == 200 and again.json()["deleted"] == 0
    audit = deployment.services.audit
    assert audit is not None
    await audit.flush()
    query = AuditQuery(tenant_id="acme", action="subjects.erase", since=began)
    rows = (await deployment.services.records.list_audit(query)).items
    assert [r.outcome for r in rows] == ["ok", "ok"]
    digest = hashlib.sha256(b"carol").hexdigest()
    assert {r.resource for r in rows} == {f"subject:sha256:{digest}"}
    receipt = {s["store"]: s["deleted"] for s in first.json()["stores"]}
    assert receipt["artifacts"] == 1 and receipt["records"] >= 2  # the run, its events
    assert rows[1].detail == receipt
    assert rows[0].detail == {"artifacts": 0, "session_history": 0, "memories": 0, "records": 0}


async def test_only_admin_keys_erase_and_only_in_their_tenant(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, admin_key=OPERATOR, log_events=False, metrics=False)
    asgi = APP.asgi(settings)
    async with asgi.router.lifespan_context(asgi):
        async with client(asgi, await key_of(asgi, "acme")) as c:
            ran = await c.post(
                "/v1/agents/echo/invoke", json={"input": "hi", "metadata": {"subject": "dan"}}
            )
            run_id = ran.json()["run_id"]
            assert (await c.delete("/v1/subjects/dan")).status_code == 403  # no admin scope
        async with client(asgi, await key_of(asgi, "globex", "admin")) as other:
            refused = await other.delete("/v1/subjects/dan", params={"tenant": "acme"})
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "forbidden"
            mine = await other.delete("/v1/subjects/dan")  # its own tenant: nothing of dan's
            assert mine.json()["deleted"] == 0
        async with client(asgi, await key_of(asgi, "acme")) as c:
            assert (await c.get(f"/v1/runs/{run_id}")).status_code == 200
        async with client(asgi, OPERATOR) as operator:
            long = await operator.delete("/v1/subjects/" + "x" * 257)
            assert long.status_code == 422
            erased = await operator.delete("/v1/subjects/dan", params={"tenant": "acme"})
            assert erased.status_code == 200, erased.text
            assert erased.json()["tenant_id"] == "acme" and erased.json()["deleted"] > 0
        async with client(asgi, await key_of(asgi, "acme")) as c:
            assert (await c.get(f"/v1/runs/{run_id}")).status_code == 404
