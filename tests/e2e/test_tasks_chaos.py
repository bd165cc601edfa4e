"""Tasks under chaos, with real processes: workers killed with SIGKILL and restarted at random
during a run, and RabbitMQ itself stopped and started again during a run. Either way every
acknowledged task (202) ends ``succeeded``, exactly once in the records.

The worker test uses a virtual host of its own on the shared RabbitMQ (which is never
restarted); the RabbitMQ restart test starts a private RabbitMQ node (own node name, ports, data
and log folders, no plugins) and restarts that one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import POSTGRES_ADMIN_URL, fresh_database, missing_service
from tests.servers import ServerProcess, WorkerProcess

APP = "tests.e2e.apps:app"
FINAL = {"succeeded", "failed", "cancelled", "dead"}


def client_for(server: ServerProcess, timeout: float = 30) -> httpx.Client:
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    return httpx.Client(base_url=server.url, headers=headers, timeout=timeout)


@dataclass
class Submitted:
    """What the submitters got back: the acknowledged tasks, and every other answer."""

    acked: dict[str, str] = field(default_factory=dict)  # idempotency key -> task id
    refused: Counter[str] = field(default_factory=Counter)  # e.g. "503", "ReadTimeout"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, key: str, task_id: str) -> None:
        with self.lock:
            self.acked[key] = task_id

    def ids(self) -> set[str]:
        with self.lock:
            return set(self.acked.values())

    def refuse(self, why: str) -> None:
        with self.lock:
            self.refused[why] += 1


def submit_one(
    client: httpx.Client, text: str, key: str, into: Submitted, agent: str = "echo"
) -> bool:
    """One POST; True when acknowledged (202)."""
    body = {"agent": agent, "input": text, "idempotency_key": key}
    try:
        reply = client.post("/v1/tasks", json=body)
    except httpx.HTTPError as exc:
        into.refuse(type(exc).__name__)
        return False
    if reply.status_code != 202:
        assert reply.status_code == 503, reply.text  # the only refusal allowed: a store is down
        into.refuse("503")
        return False
    assert reply.json()["status"] in ("queued", "running", "succeeded"), reply.text
    into.ack(key, str(reply.json()["task_id"]))
    return True


def records(server: ServerProcess) -> Any:
    """The records file (read-only), or the server's PostgreSQL database: faster than a
    thousand GETs for whole-run checks."""
    import sqlite3

    url = server.env_extra.get("SHIPYARD_DATABASE_URL")
    if url is not None:
        return _Postgres(url)
    return sqlite3.connect(f"file:{server.home / 'shipyard.db'}?mode=ro", uri=True, timeout=10)


class _Rows(list[tuple[Any, ...]]):
    def fetchall(self) -> list[tuple[Any, ...]]:
        return self


class _Postgres(contextlib.AbstractContextManager["_Postgres"]):
    """The part of a ``sqlite3`` connection the checks use, on PostgreSQL."""

    def __init__(self, url: str) -> None:
        self._url = url

    def __exit__(self, *_exc: object) -> None:
        return None

    def execute(self, sql: str) -> _Rows:
        async def fetch() -> _Rows:
            conn = await asyncpg.connect(self._url, timeout=10)
            try:
                return _Rows(tuple(r) for r in await conn.fetch(sql))
            finally:
                await conn.close()

        return asyncio.run(fetch())


def statuses(server: ServerProcess, ids: set[str]) -> Counter[str]:
    with records(server) as db:
        rows = db.execute("SELECT id, status FROM tasks").fetchall()
    return Counter(status for task_id, status in rows if task_id in ids)


def wait_all_final(server: ServerProcess, ids: set[str], seconds: float) -> Counter[str]:
    deadline = time.monotonic() + seconds
    while True:
        seen = statuses(server, ids)
        if sum(n for s, n in seen.items() if s in FINAL) == len(ids):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"not every task finished within {seconds:.0f}s: {dict(seen)}")
        time.sleep(0.2)


def assert_exactly_once(server: ServerProcess, ids: set[str], agent: str = "echo") -> None:
    """Every task ``succeeded`` with its input echoed, with exactly one ``succeeded`` move, and a
    succeeded run of its own (``run_id``); checked in the records, then through the API."""
    with records(server) as db:
        rows = db.execute("SELECT id, status, run_id, input, output FROM tasks").fetchall()
        tasks = {task_id: (status, run_id) for task_id, status, run_id, _, _ in rows}
        tasks = {task_id: tasks[task_id] for task_id in ids if task_id in tasks}
        echoed = {t: o == f"echo: {json.loads(i)}" for t, _, _, i, o in rows if t in ids}
        moves: dict[str, list[str]] = {task_id: [] for task_id in ids}
        for task_id, status in db.execute(
            "SELECT task_id, status FROM task_transitions ORDER BY id"
        ):
            if task_id in moves:
                moves[task_id].append(status)
    assert set(tasks) == ids
    assert all(echoed.values()), "a task's output is not its input echoed"
    not_succeeded = {t: s for t, (s, _) in tasks.items() if s != "succeeded"}
    assert not not_succeeded, f"{len(not_succeeded)} tasks did not succeed: {not_succeeded}"
    twice = {t: m for t, m in moves.items() if m.count("succeeded") != 1}
    assert not twice, f"{len(twice)} tasks without exactly one success: {list(twice.items())[:5]}"
    assert all(m[0] == "queued" and m[-1] == "succeeded" for m in moves.values())

    with client_for(server) as client:
        runs: dict[str, dict[str, Any]] = {}
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"agent": agent, "status": "succeeded", "limit": 500}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/v1/runs", params=params)
            assert page.status_code == 200, page.text
            runs.update((r["id"], r) for r in page.json()["runs"])
            cursor = page.json()["next_cursor"]
            if not cursor:
                break
        ran = {r["task_id"] for r in runs.values()}
        assert ids <= ran, f"{len(ids - ran)} tasks without a succeeded run"
        for task_id, (_, run_id) in tasks.items():
            assert run_id in runs and runs[run_id]["task_id"] == task_id, task_id
        for task_id in random.sample(sorted(ids), min(25, len(ids))):
            task = client.get(f"/v1/tasks/{task_id}").json()
            assert task["status"] == "succeeded", task
            assert [t["status"] for t in task["transitions"]].count("succeeded") == 1, task


def stop_all(*processes: WorkerProcess | ServerProcess | None) -> str:
    logs = []
    for process in processes:
        if process is not None:
            logs.append(process.stop()[-3000:])
    return "\n".join(logs)


# -- a virtual host of the test's own on the shared RabbitMQ ------------------------------------


@pytest.fixture
def rabbit_vhost() -> Iterator[str]:
    vhost = f"shipyard-test-{secrets.token_hex(4)}"
    try:
        made = subprocess.run(["rabbitmqctl", "add_vhost", vhost], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        missing_service(f"RabbitMQ unavailable: {exc}")
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


@pytest.fixture
def chaos_database() -> Iterator[str]:
    """A database of its own: the session's holds other tests' tasks, which its server's
    hand-over sweep would take."""
    yield from fresh_database(POSTGRES_ADMIN_URL, "shipyard_chaos", "PostgreSQL")


@pytest.fixture
def sqs_prefix() -> Iterator[str]:
    """A fresh queue name prefix on the test SQS server (moto); its queues are deleted after."""
    from tests.stores.broker.conftest import delete_sqs_queues, sqs_backend

    backend = asyncio.run(sqs_backend())
    asyncio.run(backend.close())
    yield backend.prefix
    asyncio.run(delete_sqs_queues(backend.prefix))


@pytest.mark.rabbitmq
def test_workers_killed_at_random_lose_nothing_and_duplicate_nothing(
    tmp_path: Path, rabbit_vhost: str
) -> None:
    """1,000 tasks, two workers; every 1-2 s one of them is killed (SIGKILL) and replaced.
    Each task's model takes 300 ms, so kills land mid-task as well as between tasks."""
    chaos_run(tmp_path, {"SHIPYARD_BROKER_URL": rabbit_vhost}, count=1000)


@pytest.mark.rabbitmq
@pytest.mark.postgres
def test_workers_killed_at_random_with_records_on_postgres_lose_nothing(
    tmp_path: Path, rabbit_vhost: str, chaos_database: str
) -> None:
    """The same with the records on PostgreSQL, the production path, where the moves of the
    moment share one pipelined statement (``stores/records/task_moves``)."""
    env = {"SHIPYARD_BROKER_URL": rabbit_vhost, "SHIPYARD_DATABASE_URL": chaos_database}
    chaos_run(tmp_path, env, count=1000)


@pytest.mark.sqs
def test_workers_killed_at_random_on_sqs_lose_nothing_and_duplicate_nothing(
    tmp_path: Path, sqs_prefix: str
) -> None:
    """The same on SQS (moto's server): a killed worker stops extending its messages'
    visibility, so they come back 5 s later (``visibility_s=5``) to the other worker. Tasks of
    1 s: a receive from moto takes seconds while the queue is deep (it scans every waiting
    message), so 300 ms tasks would leave a worker idle, and a kill empty-handed, most of the
    time."""
    from tests.stores.broker.conftest import SQS_ENV

    url = f"sqs://{sqs_prefix}?visibility_s=5&wait_s=1&max_receives=50"  # as the attempts above
    chaos_run(tmp_path, SQS_ENV | {"SHIPYARD_BROKER_URL": url}, count=1000, agent="slower_echo")


def chaos_run(tmp_path: Path, env: dict[str, str], *, count: int, agent: str = "slow_echo") -> None:
    """``count`` tasks of ``agent`` submitted by four clients while a worker of two is killed
    every 1-2 s and replaced; then every task succeeded exactly once."""
    rng = random.Random()
    # The cap on attempts (3: every claim counts, a worker's death included) guards against a
    # task that kills its worker; here the kills are the test's, and on a loaded machine a task
    # can be under three of them: it would end dead, by design, not lost. Loss is what is tested.
    env = {"SHIPYARD_TASK_MAX_ATTEMPTS": "50", **env}
    server = ServerProcess(home=tmp_path, app=APP, env_extra=env, startup_s=90).start()
    workers = [WorkerProcess(server, concurrency=16).start() for _ in range(2)]
    submitted = Submitted()

    def submit_all(part: int) -> None:
        with client_for(server) as client:
            for i in range(part, count, 4):
                key = f"chaos-{i}"
                while not submit_one(client, f"task {i}", key, submitted, agent):
                    time.sleep(0.1)  # a 503 (store busy or down): the same key again

    try:
        with ThreadPoolExecutor(4) as pool:
            submitting = [pool.submit(submit_all, part) for part in range(4)]
            kills = kill_while_running(server, workers, (submitted, submitting), count, rng)
            for future in submitting:
                future.result()
        ids = submitted.ids()
        assert len(submitted.acked) == count and len(ids) == count
        final = wait_all_final(server, ids, seconds=90)
        assert final == {"succeeded": count}, dict(final)
        assert_exactly_once(server, ids, agent)
        assert kills >= 3, f"only {kills} kills: the run ended too soon to be a chaos test"
        with records(server) as db:
            running = "SELECT task_id FROM task_transitions WHERE status = 'running'"
            claims = Counter(task_id for (task_id,) in db.execute(running))
        again = sum(1 for t, n in claims.items() if t in ids and n > 1)
        assert again, "no task was taken over from a killed worker: the kills missed every task"
        print(
            f"{count} tasks, {kills} workers killed, {again} tasks run again after a kill, "
            f"refused {dict(submitted.refused)}"
        )
    finally:
        logs = stop_all(*workers, server)
    assert "Traceback" not in server.log, logs


def kill_while_running(
    server: ServerProcess,
    workers: list[WorkerProcess],
    submissions: tuple[Submitted, list[Any]],
    count: int,
    rng: random.Random,
) -> int:
    """Every 1-2 s, one worker killed (SIGKILL) and replaced, for at most 90 s or until every
    task is submitted and done; the number of kills."""
    submitted, submitting = submissions
    kills = 0
    deadline = time.monotonic() + 90
    next_kill = time.monotonic() + rng.uniform(1.0, 2.0)
    while time.monotonic() < deadline:
        time.sleep(max(0.0, next_kill - time.monotonic()))  # 1-2 s from the last kill
        done = statuses(server, submitted.ids())["succeeded"]
        if all(f.done() for f in submitting) and done >= count:
            break
        victim = rng.randrange(len(workers))
        workers[victim].kill()
        kills += 1
        next_kill = time.monotonic() + rng.uniform(1.0, 2.0)
        workers[victim] = WorkerProcess(server, concurrency=16).start()
    return kills


# -- a private RabbitMQ node, restarted during a run --------------------------------------------


def _rabbit_script(name: str) -> str | None:
    """The RabbitMQ script itself, not the distribution's wrapper (which switches user)."""
    direct = Path("/usr/lib/rabbitmq/bin") / name
    return str(direct) if direct.exists() else shutil.which(name)


def _port_pair() -> tuple[int, int]:
    """Two free ports in 20000-44999: the CLI tools use the distribution port + 10000."""
    ports: list[int] = []
    while len(ports) < 2:
        port = random.randrange(20000, 45000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports[0], ports[1]


@dataclass
class PrivateRabbit:
    """A RabbitMQ node of the test's own: its own name, ports, data, logs and cookie."""

    root: Path
    server_script: str
    ctl_script: str
    node: str = field(default_factory=lambda: f"shipyard-test-{secrets.token_hex(4)}@localhost")
    ports: tuple[int, int] = field(default_factory=_port_pair)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.ports[0]}/"

    @property
    def env(self) -> dict[str, str]:
        (self.root / "home").mkdir(parents=True, exist_ok=True)
        conf = self.root / "rabbitmq.conf"
        conf.write_text(f"listeners.tcp.default = 127.0.0.1:{self.ports[0]}\n")
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq-env.conf").write_text("")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self.root / "home"),  # the Erlang cookie is created there
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.ports[0]),
            RABBITMQ_DIST_PORT=str(self.ports[1]),
            RABBITMQ_CONFIG_FILE=str(conf),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.root / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(self.root / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.root / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(self.root / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.root / "log"),
            RABBITMQ_PID_FILE=str(self.root / "node.pid"),
            RABBITMQ_PLUGINS_EXPAND_DIR=str(self.root / "plugins-expand"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def start(self, within_s: float = 60) -> None:
        self.starts += 1
        env = self.env  # creates the node's folder
        with (self.root / f"start-{self.starts}.log").open("wb") as out:
            self.proc = subprocess.Popen(
                [self.server_script],
                env=env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + within_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"RabbitMQ exited with {self.proc.returncode}: {self.log}")
            try:
                socket.create_connection(("127.0.0.1", self.ports[0]), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    late = f"RabbitMQ not up after {within_s:.0f}s: {self.log}"
                    raise RuntimeError(late) from None
                time.sleep(0.1)

    def stop(self) -> None:
        """``rabbitmqctl stop``: the node shuts down (gracefully) and its process exits."""
        if self.proc is None:
            return
        stop = [self.ctl_script, "-n", self.node, "stop"]
        subprocess.run(stop, env=self.env, capture_output=True, timeout=60)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # our own session only
            self.proc.wait()
        self.proc = None

    @property
    def log(self) -> str:
        path = self.root / f"start-{self.starts}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@pytest.fixture
def private_rabbit(tmp_path: Path) -> Iterator[PrivateRabbit]:
    server_script, ctl_script = _rabbit_script("rabbitmq-server"), _rabbit_script("rabbitmqctl")
    if server_script is None or ctl_script is None:
        missing_service("RabbitMQ is not installed here (no rabbitmq-server, rabbitmqctl)")
    assert server_script is not None and ctl_script is not None
    node = PrivateRabbit(tmp_path / "rabbit", server_script, ctl_script)
    try:
        node.start()
    except RuntimeError as exc:
        node.stop()
        missing_service(f"cannot start a private RabbitMQ node: {exc}")
    try:
        yield node
    finally:
        node.stop()


@pytest.mark.rabbitmq
def test_rabbitmq_restarted_during_a_run_loses_nothing(
    tmp_path: Path, private_rabbit: PrivateRabbit
) -> None:
    """Tasks flow while the node is stopped and started again: the server and the workers
    reconnect by themselves, and every acknowledged task succeeds exactly once. While the node
    is down a submission may answer 503 (allowed); none may be lost once acknowledged."""
    home = tmp_path / "home"
    home.mkdir()
    server = ServerProcess(
        home=home, app=APP, env_extra={"SHIPYARD_BROKER_URL": private_rabbit.url}
    ).start()
    workers = [WorkerProcess(server, concurrency=8).start() for _ in range(2)]
    submitted = Submitted()
    phase = {"now": "before"}
    by_phase: dict[str, list[str]] = {"before": [], "down": [], "after": []}
    stop = threading.Event()

    def keep_submitting(part: int) -> None:
        with client_for(server, timeout=20) as client:
            i = 0
            while not stop.is_set():
                key, when = f"restart-{part}-{i}", phase["now"]
                if submit_one(client, f"task {part}-{i}", key, submitted):
                    by_phase[when].append(key)
                i += 1
                time.sleep(0.02)

    try:
        with ThreadPoolExecutor(3) as pool:
            submitting = [pool.submit(keep_submitting, part) for part in range(3)]
            time.sleep(2.0)
            phase["now"] = "down"
            private_rabbit.stop()
            time.sleep(3.0)  # submissions meanwhile wait for the broker, or answer 503
            private_rabbit.start()
            phase["now"] = "after"
            deadline = time.monotonic() + 30
            while len(by_phase["after"]) < 50 and time.monotonic() < deadline:
                time.sleep(0.2)
            stop.set()
            for future in submitting:
                future.result()
        for process in (server, *workers):
            assert process.proc is not None and process.proc.poll() is None, "a process exited"
        assert by_phase["before"], "nothing acknowledged before the restart"
        assert len(by_phase["after"]) >= 50, (
            f"the server did not take tasks again after the restart: {dict(submitted.refused)}"
        )
        ids = submitted.ids()
        final = wait_all_final(server, ids, seconds=60)
        assert final == {"succeeded": len(ids)}, dict(final)
        assert_exactly_once(server, ids)
        # the workers ran tasks handed over after the restart: they consume again
        with records(server) as db:
            after = {submitted.acked[k] for k in by_phase["after"]}
            rows = db.execute("SELECT id, status FROM tasks").fetchall()
        assert {t for t, s in rows if t in after and s == "succeeded"} == after
        print(
            f"acknowledged {len(ids)} (before {len(by_phase['before'])}, while down "
            f"{len(by_phase['down'])}, after {len(by_phase['after'])}); "
            f"refused {dict(submitted.refused)}"
        )
    finally:
        stop.set()
        logs = stop_all(*workers, server)
    # aiormq logs the forced close with a traceback; the server itself must not fail a request
    assert "unhandled error" not in server.log, logs
