"""Worker heartbeats: ``GET /v1/workers`` shows live workers with their counts, a stopped one as
stopped, and one killed with SIGKILL as stale once its heartbeats stop."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_tasks import client_for, submit, wait_final
from tests.servers import ServerProcess, WorkerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        home=tmp_path,
        app="tests.e2e.apps:app",
        env_extra={"SHIPYARD_WORKER_HEARTBEAT_S": "0.2"},
    ).start()
    yield proc
    proc.stop()


def workers(client: httpx.Client) -> dict[int, dict[str, Any]]:
    reply = client.get("/v1/workers")
    assert reply.status_code == 200, reply.text
    return {w["pid"]: w for w in reply.json()["workers"]}


def wait_state(client: httpx.Client, pid: int, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = workers(client).get(pid)
        if found is not None and found["state"] == state:
            return found
        time.sleep(0.1)
    raise AssertionError(f"worker {pid} never {state}: {workers(client).get(pid)}")


def test_workers_report_alive_stopped_and_stale(server: ServerProcess) -> None:
    first = WorkerProcess(server, concurrency=3).start()
    second = WorkerProcess(server, concurrency=2).start()
    try:
        with client_for(server) as client:
            assert first.proc is not None and second.proc is not None
            one, two = first.proc.pid, second.proc.pid
            alive = wait_state(client, one, "alive")
            assert alive["concurrency"] == 3 and alive["heartbeat_s"] == 0.2
            task = wait_final(client, submit(client, "echo", "hello"))
            assert task["status"] == "succeeded"
            deadline = time.monotonic() + 20
            while sum(w["succeeded"] for w in workers(client).values()) < 1:
                assert time.monotonic() < deadline
                time.sleep(0.1)

            first.stop()  # SIGTERM: its last heartbeat says it stopped
            assert wait_state(client, one, "stopped")["stopped_at"] is not None
            second.kill()  # SIGKILL: no last word; stale after three missed heartbeats
            stale = wait_state(client, two, "stale")
            assert stale["stopped_at"] is None

            recent = client.get("/v1/workers", params={"seen_within_s": 3600}).json()
            assert {one, two} <= {w["pid"] for w in recent["workers"]}
    finally:
        first.stop()
        second.stop()


def test_workers_are_for_admin_keys(server: ServerProcess) -> None:
    made = server.cli("keys", "create", "--tenant", "acme", "--scopes", "read")
    assert made.returncode == 0, made.stderr
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/v1/workers").status_code == 401
        reader = {"Authorization": f"Bearer {made.stdout.strip()}"}
        assert client.get("/v1/workers", headers=reader).status_code == 403
        bad = client.get(
            "/v1/workers",
            params={"seen_within_s": -1},
            headers={"Authorization": f"Bearer {server.admin_key}"},
        )
        assert bad.status_code == 422
