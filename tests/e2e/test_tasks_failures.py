"""Tasks end to end, on the failures a user meets: input as a list of messages, one tenant's
troubled tasks beside another's, cancelling a running task on the default (embedded) setup, and
finding the run of a task or an invoke that failed. Real server and worker processes."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_api import make_key
from tests.e2e.test_tasks import client_for, rabbit_vhost, wait_final
from tests.servers import ServerProcess, WorkerProcess

__all__ = ["rabbit_vhost"]

APP = "tests.e2e.apps:app"
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "hi"},
]


def submit(client: httpx.Client, agent: str, input: Any, **body: Any) -> str:
    reply = client.post("/v1/tasks", json={"agent": agent, "input": input, **body})
    assert reply.status_code == 202, reply.text
    return str(reply.json()["task_id"])


def wait_running(client: httpx.Client, task_id: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while client.get(f"/v1/tasks/{task_id}").json()["status"] != "running":
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.02)


def watch(server: ServerProcess, task_id: str) -> list[str]:
    """The task's event stream, from the start until the task ends."""
    with client_for(server) as client, client.stream("GET", f"/v1/tasks/{task_id}/events") as s:
        return list(s.iter_lines())


@pytest.fixture(params=["embedded", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def broker_env(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "embedded":
        return {}
    return {"SHIPYARD_BROKER_URL": request.getfixturevalue("rabbit_vhost")}


def test_a_task_of_messages_runs_once(tmp_path: Path, broker_env: dict[str, str]) -> None:
    server = ServerProcess(home=tmp_path, app=APP, env_extra=broker_env).start()
    worker = WorkerProcess(server).start()
    try:
        with client_for(server) as client:
            task = wait_final(client, submit(client, "echo", MESSAGES))
            assert task["status"] == "succeeded" and task["output"] == "echo: hi"
            assert task["attempts"] == 1
            run = client.get(f"/v1/runs/{task['run_id']}").json()
            assert run["input"] == MESSAGES and run["status"] == "succeeded"
    finally:
        worker.stop()
        server.stop()


def test_one_tenants_troubled_tasks_hold_back_no_other_tenant(tmp_path: Path) -> None:
    """Two tasks of messages from one tenant (the issue's poison: they looped forever and held
    the worker's slots) beside 50 tasks of another tenant: all of them finish."""
    server = ServerProcess(
        home=tmp_path, app=APP, env_extra={"SHIPYARD_TASK_RETRY_BASE_S": "0.1"}
    ).start()
    worker = WorkerProcess(server, concurrency=4).start()
    key = make_key(server, "acme", "invoke,read")
    try:
        with (
            client_for(server) as other,
            httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as acme,
        ):
            troubled = [submit(acme, "echo", MESSAGES) for _ in range(2)]
            normal = [submit(other, "echo", f"task {i}") for i in range(50)]
            ended = [wait_final(other, task_id, seconds=120) for task_id in normal]
            assert all(t["status"] == "succeeded" for t in ended)
            for task_id in troubled:
                assert wait_final(acme, task_id, seconds=120)["status"] == "succeeded"
    finally:
        worker.stop()
        server.stop()


def test_a_running_task_is_cancelled_on_the_embedded_setup(tmp_path: Path) -> None:
    """The default setup: a server and a worker process sharing the embedded stores' files."""
    server = ServerProcess(home=tmp_path, app=APP).start()
    worker = WorkerProcess(server, concurrency=1).start()
    try:
        with client_for(server) as client:
            task_id = submit(client, "sleepy", "zzz")
            wait_running(client, task_id)
            with ThreadPoolExecutor(1) as pool:  # a client watching the task live
                watched = pool.submit(watch, server, task_id)
                time.sleep(0.5)  # (it has seen the run start; not needed for correctness)
                reply = client.post(f"/v1/tasks/{task_id}/cancel")
                lines = watched.result(timeout=60)
            assert reply.status_code == 200, reply.text
            moves = [m["status"] for m in reply.json()["transitions"]]
            assert moves[:2] == ["queued", "running"]
            task = wait_final(client, task_id, seconds=20)
            assert task["status"] == "cancelled"
            run = client.get(f"/v1/runs/{task['run_id']}").json()
            assert run["task_id"] == task_id
            assert run["error"] == {"code": "cancelled", "message": "cancelled through the API"}
            kinds = [line[7:] for line in lines if line.startswith("event: ")]
            ids = [line[4:] for line in lines if line.startswith("id: ")]
            # the request is a change of its own; the run's end still streams after it
            assert kinds[:3] == ["task.queued", "task.running", "run.started"]
            assert "run.failed" in kinds and kinds[-1] == "task.cancelled"
            assert len(ids) == len(set(ids))
    finally:
        worker.stop()
        server.stop()


def test_a_failed_task_and_a_failed_invoke_name_their_run(tmp_path: Path) -> None:
    server = ServerProcess(
        home=tmp_path,
        app=APP,
        env_extra={"SHIPYARD_TASK_MAX_ATTEMPTS": "2", "SHIPYARD_TASK_RETRY_BASE_S": "0.1"},
    ).start()
    worker = WorkerProcess(server).start()
    try:
        with client_for(server) as client:
            failed = wait_final(client, submit(client, "crashy", "x"))
            dead = wait_final(client, submit(client, "broken", "x"))
            for task in (failed, dead):
                run = client.get(f"/v1/runs/{task['run_id']}").json()
                assert run["task_id"] == task["id"] and run["status"] == "failed"
                listed = client.get("/v1/tasks", params={"status": task["status"]}).json()
                assert {t["id"]: t["run_id"] for t in listed["tasks"]}[task["id"]] == run["id"]
            assert failed["status"] == "failed" and dead["status"] == "dead"

            reply = client.post("/v1/agents/broken/invoke", json={"input": "x"})
            assert reply.status_code == 502
            details = reply.json()["error"]["details"]
            run = client.get(f"/v1/runs/{details['run_id']}").json()
            assert run["status"] == "failed" and run["trace_id"] == details["trace_id"]
    finally:
        worker.stop()
        server.stop()


@pytest.mark.rabbitmq
def test_a_cancel_outlives_the_worker_that_heard_it(tmp_path: Path, rabbit_vhost: str) -> None:
    """Cancelled while running, its worker killed before it could stop it: the worker that
    takes the run over cancels it instead of running the agent again."""
    server = ServerProcess(
        home=tmp_path, app=APP, env_extra={"SHIPYARD_BROKER_URL": rabbit_vhost}
    ).start()
    first = WorkerProcess(server, concurrency=1).start()
    second: WorkerProcess | None = None
    try:
        with client_for(server) as client:
            task_id = submit(client, "sleepy", "zzz")
            wait_running(client, task_id)
            first.kill()
            reply = client.post(f"/v1/tasks/{task_id}/cancel")
            assert reply.status_code == 200 and reply.json()["status"] == "running"
            asked = reply.json()["transitions"][-1]
            assert asked["detail"]["cancel"] == "requested"  # says what it did
            second = WorkerProcess(server, concurrency=1).start()
            task = wait_final(client, task_id, seconds=20)
            assert task["status"] == "cancelled" and task["attempts"] == 2
            runs = client.get("/v1/runs", params={"agent": "sleepy"}).json()["runs"]
            assert len(runs) <= 1  # the agent did not run again (the first run, if recorded)
    finally:
        first.stop()
        if second is not None:
            second.stop()
        server.stop()
