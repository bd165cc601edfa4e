"""The record store goes away under a running server: it says so, loses nothing, and recovers."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import POSTGRES_ADMIN_URL, admin_sql
from tests.servers import ServerProcess

pytestmark = pytest.mark.postgres


@pytest.fixture
def database(postgres_url: str) -> Iterator[tuple[str, str]]:
    """A database of its own (the session's database is shared by other tests)."""
    name = f"shipyard_outage_{secrets.token_hex(4)}"
    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    yield name, f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def outage(name: str, *, on: bool) -> None:
    allow = "false" if on else "true"
    asyncio.run(admin_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {allow}'))
    if on:
        asyncio.run(
            admin_sql(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            )
        )


def wait_until(check, seconds: float = 30):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_a_store_outage_answers_503_and_loses_no_run(
    tmp_path: Path, database: tuple[str, str]
) -> None:
    name, url = database
    server = ServerProcess(
        home=tmp_path,
        app="tests.e2e.apps:app",
        env_extra={
            "SHIPYARD_DATABASE_URL": url,
            "SHIPYARD_RECORD_WAIT_S": "1",
            "SHIPYARD_KEY_CACHE_S": "300",
        },
    ).start()
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            assert (
                client.post("/v1/agents/echo/invoke", json={"input": "before"}).status_code == 200
            )

            outage(name, on=True)
            assert client.get("/healthz").status_code == 200
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
            during = client.post("/v1/agents/echo/invoke", json={"input": "during the outage"})
            assert during.status_code == 503
            assert during.json()["error"]["code"] == "store_unavailable"
            listing = client.get("/v1/runs")
            assert listing.status_code == 503
            assert listing.json()["error"]["code"] == "store_unavailable"
            for reply in (ready, during, listing):  # what failed, never which driver or host
                for leak in ("asyncpg", "postgres", "127.0.0.1", "Error", "sqlalchemy"):
                    assert leak not in reply.text, reply.text

            outage(name, on=False)
            wait_until(lambda: client.get("/readyz").status_code == 200)

            def recorded() -> list[dict[str, object]]:
                reply = client.get("/v1/runs", params={"agent": "echo", "limit": 10})
                runs = reply.json().get("runs", []) if reply.status_code == 200 else []
                return [r for r in runs if r["input"] == "during the outage"]

            runs = wait_until(recorded)
            assert (
                runs[0]["status"] == "succeeded" and runs[0]["output"] == "echo: during the outage"
            )
            events = client.get(f"/v1/runs/{runs[0]['id']}/events").json()["events"]
            assert [e["type"] for e in events][-1] == "run.completed"
    finally:
        log = server.stop()
    assert "record write failed, retrying" in log
