"""Tasks end to end: a server and separate worker processes, on the embedded broker and on
RabbitMQ."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import missing_service
from tests.e2e.webhook_receiver import WebhookReceiver
from tests.servers import ServerProcess, WorkerProcess

FINAL = {"succeeded", "failed", "cancelled", "dead"}


def client_for(server: ServerProcess) -> httpx.Client:
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def submit(
    client: httpx.Client, agent: str, text: str, headers: dict[str, str] | None = None, **body: Any
) -> str:
    reply = client.post("/v1/tasks", json={"agent": agent, "input": text, **body}, headers=headers)
    assert reply.status_code == 202, reply.text
    assert reply.json()["status"] == "queued"
    return str(reply.json()["task_id"])


def wait_final(client: httpx.Client, task_id: str, seconds: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        task: dict[str, Any] = client.get(f"/v1/tasks/{task_id}").json()
        if task["status"] in FINAL:
            return task
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} did not finish: {task}")


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(
        home=tmp_path,
        app="tests.e2e.apps:app",
        env_extra={"SHIPYARD_TASK_MAX_ATTEMPTS": "2", "SHIPYARD_TASK_RETRY_BASE_S": "0.1"},
    ).start()
    yield server
    server.stop()


def test_a_task_is_acknowledged_then_run_by_a_worker(embedded: ServerProcess) -> None:
    with client_for(embedded) as client:
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        traceparent = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
        task_id = submit(client, "calc", "2+3?", headers=traceparent, metadata={"ticket": 7})
        assert client.get(f"/v1/tasks/{task_id}").json()["status"] == "queued"  # no worker yet
        worker = WorkerProcess(embedded).start()
        try:
            task = wait_final(client, task_id)
        finally:
            worker.stop()
        assert task["status"] == "succeeded" and task["output"] == "It is 5."
        assert task["attempts"] == 1 and task["usage"]["prompt_tokens"] > 0
        assert [t["status"] for t in task["transitions"]] == ["queued", "running", "succeeded"]
        run = client.get(f"/v1/runs/{task['run_id']}").json()
        assert run["task_id"] == task_id and run["status"] == "succeeded"
        assert run["trace_id"] == trace_id  # the caller's trace crossed the broker
        listed = client.get("/v1/tasks", params={"status": "succeeded"}).json()["tasks"]
        assert task_id in [t["id"] for t in listed]


def test_idempotency_cancel_and_restart_survival(embedded: ServerProcess) -> None:
    with client_for(embedded) as client:
        first = client.post(
            "/v1/tasks", json={"agent": "echo", "input": "once", "idempotency_key": "k-1"}
        )
        again = client.post(
            "/v1/tasks", json={"agent": "echo", "input": "once", "idempotency_key": "k-1"}
        )
        assert first.json()["task_id"] == again.json()["task_id"]
        assert again.headers["idempotent-replayed"] == "true"
        other = client.post(
            "/v1/tasks", json={"agent": "echo", "input": "twice", "idempotency_key": "k-1"}
        )
        assert other.status_code == 409
        assert other.json()["error"]["code"] == "idempotency_conflict"

        doomed = submit(client, "echo", "never runs")
        cancelled = client.post(f"/v1/tasks/{doomed}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        refused = client.post(f"/v1/tasks/{doomed}/cancel")
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "task_finished"
        kept = submit(client, "echo", "queued across a restart")

    embedded.stop()  # the embedded broker keeps queued tasks on disk
    embedded.start()
    worker = WorkerProcess(embedded).start()
    try:
        with client_for(embedded) as client:
            assert wait_final(client, kept)["output"] == "echo: queued across a restart"
            assert wait_final(client, first.json()["task_id"])["output"] == "echo: once"
            assert client.get(f"/v1/tasks/{doomed}").json()["status"] == "cancelled"
            assert (
                client.get("/v1/runs", params={"agent": "echo", "limit": 10}).json()["runs"][0][
                    "input"
                ]
                != "never runs"
            )
    finally:
        worker.stop()


def test_a_task_that_always_fails_ends_dead(embedded: ServerProcess) -> None:
    worker = WorkerProcess(embedded).start()
    try:
        with client_for(embedded) as client:
            task = wait_final(client, submit(client, "broken", "x"))
        assert task["status"] == "dead" and task["attempts"] == 2
        assert task["error"]["code"] == "model_error"
        assert [t["status"] for t in task["transitions"]] == [
            "queued", "running", "queued", "running", "dead",
        ]  # fmt: skip
    finally:
        worker.stop()


def test_bad_submissions(embedded: ServerProcess) -> None:
    with client_for(embedded) as client:
        unknown = client.post("/v1/tasks", json={"agent": "nobody", "input": "x"})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "agent_not_found"
        bad = client.post("/v1/tasks", json={"agent": "echo", "input": "x", "priority": 12})
        assert bad.status_code == 422 and "priority" in bad.json()["error"]["message"]
        missing = client.get("/v1/tasks/task_nope")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "task_not_found"


@pytest.fixture
def rabbit_vhost() -> Iterator[str]:
    """A RabbitMQ virtual host of this test's own (the shared server is never restarted)."""
    vhost = f"shipyard-test-{secrets.token_hex(4)}"
    made = subprocess.run(["rabbitmqctl", "add_vhost", vhost], capture_output=True, timeout=60)
    if made.returncode != 0:
        missing_service(f"RabbitMQ unavailable: {made.stderr.decode()[:200]}")
    subprocess.run(
        ["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, timeout=60)


@pytest.mark.rabbitmq
def test_a_server_killed_before_the_broker_took_a_task_loses_nothing(
    tmp_path: Path, rabbit_vhost: str
) -> None:
    """202 once recorded, though the broker refuses; kill -9 before it ever took the task; the
    next server takes the hand-over over (once nobody has said for a second that it is on it)."""
    env = {"SHIPYARD_BROKER_URL": rabbit_vhost, "SHIPYARD_TASK_HANDOVER_SWEEP_S": "1"}
    server = ServerProcess(home=tmp_path, app="tests.e2e.apps:app", env_extra=env).start()
    vhost = rabbit_vhost.rsplit("/", 1)[1]
    refuse = ["-p", vhost, "full", ".*", '{"max-length": 0, "overflow": "reject-publish"}']
    worker: WorkerProcess | None = None
    try:
        with client_for(server) as client:  # (the policy's max-length drops this one)
            submit(client, "echo", "the queue exists")
        time.sleep(1)  # the broker took it, into the queue the policy will make refuse
        rabbitmqctl("set_policy", *refuse, "--apply-to", "queues")
        time.sleep(1)  # policies apply asynchronously
        with client_for(server) as client:
            task_id = submit(client, "echo", "stranded")
            time.sleep(0.3)  # the broker refuses it meanwhile
            assert server.proc is not None
            server.proc.kill()  # no chance to hand anything over
        server.stop()
        rabbitmqctl("clear_policy", "-p", vhost, "full")
        server = ServerProcess(
            home=tmp_path, app="tests.e2e.apps:app", env_extra=env, admin_key=server.admin_key
        ).start()
        worker = WorkerProcess(server, concurrency=2).start()
        with client_for(server) as client:
            task = wait_final(client, task_id)
            assert task["status"] == "succeeded" and task["output"] == "echo: stranded"
    finally:
        if worker is not None:
            worker.stop()
        server.stop()


def rabbitmqctl(*args: str) -> None:
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, timeout=60, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.rabbitmq
def test_a_worker_killed_mid_task_loses_nothing(tmp_path: Path, rabbit_vhost: str) -> None:
    server = ServerProcess(
        home=tmp_path, app="tests.e2e.apps:app", env_extra={"SHIPYARD_BROKER_URL": rabbit_vhost}
    ).start()
    first = WorkerProcess(server, concurrency=1).start()
    second: WorkerProcess | None = None
    try:
        with client_for(server) as client:
            task_id = submit(client, "slow_echo", "survive the crash")
            deadline = time.monotonic() + 30
            while client.get(f"/v1/tasks/{task_id}").json()["status"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.01)
            first.kill()  # mid-task: the model takes 300 ms
            second = WorkerProcess(server, concurrency=1).start()
            task = wait_final(client, task_id)
        assert task["status"] == "succeeded" and task["output"] == "echo: survive the crash"
        assert [t["status"] for t in task["transitions"]].count("succeeded") == 1
        assert task["attempts"] == 2  # the delivery to the killed worker counts
    finally:
        first.stop()
        if second is not None:
            second.stop()
        server.stop()


@pytest.mark.redis
def test_a_running_task_is_cancelled_through_its_worker(tmp_path: Path) -> None:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        missing_service("Redis unreachable at 127.0.0.1:6379")
    server = ServerProcess(
        home=tmp_path,
        app="tests.e2e.apps:app",
        env_extra={"SHIPYARD_STATE_URL": "redis://127.0.0.1:6379/0"},  # channels across processes
    ).start()
    worker = WorkerProcess(server, concurrency=1).start()
    try:
        with client_for(server) as client:
            task_id = submit(client, "sleepy", "zzz")
            deadline = time.monotonic() + 30
            while client.get(f"/v1/tasks/{task_id}").json()["status"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert client.post(f"/v1/tasks/{task_id}/cancel").status_code == 200
            task = wait_final(client, task_id, seconds=20)
            assert task["status"] == "cancelled"
            runs = client.get("/v1/runs", params={"agent": "sleepy"}).json()["runs"]
            assert runs[0]["error"] == {"code": "cancelled", "message": "cancelled through the API"}
    finally:
        worker.stop()
        server.stop()


def test_the_webhook_is_signed_and_retried(tmp_path: Path) -> None:
    import json

    receiver = WebhookReceiver(lambda n: 500 if n < 2 else 204)  # fails twice, then accepts
    server = ServerProcess(
        home=tmp_path,
        app="tests.e2e.apps:app",
        env_extra={
            "SHIPYARD_WEBHOOK_RETRY_BASE_S": "0.05",
            "SHIPYARD_LOG_LEVEL": "info",
            "SHIPYARD_WEBHOOK_ALLOW": receiver.allow,
        },
    ).start()
    worker = WorkerProcess(server).start()
    try:
        with client_for(server) as client:
            task_id = submit(client, "echo", "call me back", webhook_url=receiver.url)
            assert wait_final(client, task_id)["status"] == "succeeded"
            secret = client.get("/v1/webhooks/secret").json()["secret"]
        receiver.wait_for(3)
    finally:
        log = worker.stop()
        server.stop()
        receiver.close()
    assert [status for status, _, _ in receiver.received] == [500, 500, 204]
    receiver.check_signatures(secret)
    event = json.loads(receiver.received[-1][2])
    assert event["specversion"] == "1.0" and event["type"] == "dev.shipyard.task.succeeded"
    assert event["data"]["task_id"] == task_id and event["data"]["output"] == "echo: call me back"
    assert log.count("webhook attempt") == 3


def test_task_events_stream_and_resume(embedded: ServerProcess) -> None:
    import json

    with client_for(embedded) as client:
        task_id = submit(client, "slow_echo", "watch me")
        worker = WorkerProcess(embedded).start()
        try:
            with client.stream("GET", f"/v1/tasks/{task_id}/events") as reply:
                assert reply.headers["content-type"].startswith("text/event-stream")
                lines = list(reply.iter_lines())
        finally:
            worker.stop()
        ids = [line[4:] for line in lines if line.startswith("id: ")]
        kinds = [line[7:] for line in lines if line.startswith("event: ")]
        data = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
        # the status changes, and between running and succeeded the steps of the run
        assert kinds == [
            "task.queued",
            "task.running",
            "run.started",
            "llm.request",
            "llm.response",
            "run.completed",
            "task.succeeded",
        ]
        assert ids == ["1", "2", "2.1", "2.2", "2.3", "2.4", "3"]
        run_id = data[1]["detail"]["run_id"]  # the running change names its run
        assert {d["run_id"] for d in data[2:6]} == {run_id}
        assert client.get(f"/v1/tasks/{task_id}").json()["run_id"] == run_id
        assert data[-1]["status"] == "succeeded"

        def resumed(last_event_id: str) -> list[str]:
            with client.stream(
                "GET", f"/v1/tasks/{task_id}/events", headers={"Last-Event-ID": last_event_id}
            ) as reply:
                return [x[4:] for x in reply.iter_lines() if x.startswith("id: ")]

        assert resumed("2") == ["2.1", "2.2", "2.3", "2.4", "3"]
        assert resumed("2.2") == ["2.3", "2.4", "3"]
        assert resumed("2.4") == ["3"]
        for bad in ("x", "2.y", "-1"):
            reply = client.get(f"/v1/tasks/{task_id}/events", headers={"Last-Event-ID": bad})
            assert reply.status_code == 422, bad
        assert client.get("/v1/tasks/task_nope/events").status_code == 404


def test_sigterm_lets_the_running_task_finish(embedded: ServerProcess) -> None:
    worker = WorkerProcess(embedded, concurrency=1).start()
    with client_for(embedded) as client:
        task_id = submit(client, "slow_echo", "finish me first")
        deadline = time.monotonic() + 30
        while client.get(f"/v1/tasks/{task_id}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc = worker.proc
        assert proc is not None
        log = worker.stop()  # SIGTERM while the task runs (its model takes 300 ms)
        assert proc.returncode == 0 and "worker stopped" in log
        task = client.get(f"/v1/tasks/{task_id}").json()
        assert task["status"] == "succeeded" and task["output"] == "echo: finish me first"
