"""Workers expose their metrics on ``SHIPYARD_METRICS_PORT`` (no auth), as the server can too:
a real server and a real worker process on the embedded broker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_tasks import wait_final
from tests.servers import ServerProcess, WorkerProcess, free_port
from tests.telemetry.scrape import Scrape, parse

SETTINGS = {"SHIPYARD_TASK_MAX_ATTEMPTS": "2", "SHIPYARD_TASK_RETRY_BASE_S": "0.1"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    env = {**SETTINGS, "SHIPYARD_METRICS_PORT": str(free_port())}
    proc = ServerProcess(home=tmp_path, app="tests.e2e.apps:app", env_extra=env).start()
    yield proc
    proc.stop()


def metrics_at(port: str) -> Scrape:
    return parse(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10))


def test_a_worker_exposes_task_metrics_on_its_port(server: ServerProcess) -> None:
    server_port = server.env_extra["SHIPYARD_METRICS_PORT"]
    assert metrics_at(server_port)["shipyard_queue_depth", {"queue": "tasks"}] == 0
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        ids = {}
        for agent in ("calc", "crashy", "broken"):
            reply = client.post("/v1/tasks", json={"agent": agent, "input": "2+3?"})
            assert reply.status_code == 202, reply.text
            ids[agent] = reply.json()["task_id"]

        # the server samples the queue's depth in the background (every 5 s)
        deadline = time.monotonic() + 20
        while metrics_at(server_port)["shipyard_queue_depth", {"queue": "tasks"}] != 3:
            assert time.monotonic() < deadline, "the queue depth was not sampled"
            time.sleep(0.2)

        worker_port = str(free_port())
        worker_settings = ServerProcess(
            home=server.home,
            app=server.app,
            admin_key=server.admin_key,
            env_extra={**SETTINGS, "SHIPYARD_METRICS_PORT": worker_port},
        )  # the worker's settings: the server's, with a metrics port of its own
        worker = WorkerProcess(worker_settings).start()
        try:
            finals = {agent: wait_final(client, task)["status"] for agent, task in ids.items()}
            found = metrics_at(worker_port)
        finally:
            worker.stop()
    assert finals == {"calc": "succeeded", "crashy": "failed", "broken": "dead"}

    finished = "shipyard_tasks_finished_total"
    assert found[finished, {"agent": "calc", "status": "succeeded"}] == 1
    assert found[finished, {"agent": "crashy", "status": "failed"}] == 1
    assert found[finished, {"agent": "broken", "status": "dead"}] == 1
    assert found["shipyard_task_retries_total", {"agent": "broken"}] == 1
    assert found["shipyard_task_retries_total", {"agent": "calc"}] == 0
    lag = "shipyard_task_lag_seconds"
    assert found[f"{lag}_count", {}] == 3  # each task's first claim
    assert found[f"{lag}_bucket", {"le": "+Inf"}] == 3
    assert found[f"{lag}_sum", {}] > 0

    # the runs happened in the worker: its metrics count them, with the task execution model
    runs = "shipyard_runs_total"
    assert found[runs, {"agent": "calc", "execution": "task", "outcome": "succeeded"}] == 1
    assert found[runs, {"agent": "broken", "execution": "task", "outcome": "failed"}] == 2
    assert found["shipyard_run_errors_total", {"agent": "crashy", "code": "run_failed"}] == 1
    assert found["shipyard_llm_tokens_total", {"agent": "calc", "type": "prompt"}] > 0
    assert found["shipyard_tool_duration_seconds_count", {"agent": "calc", "tool": "add"}] == 1
    assert metrics_at(server_port)[runs, {"execution": "task"}] == 0
