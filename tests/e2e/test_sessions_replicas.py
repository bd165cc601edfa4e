"""Sessions across replicas, with no load balancer: any replica serves any session.

Two ``shipyard serve`` processes share one Redis (state) and one PostgreSQL database (records),
as replicas behind a load balancer would. Turns are deliberately alternated between them, one
of them is killed, and a Redis of the test's own is killed and restarted under traffic.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import missing_service
from tests.servers import ServerProcess, free_port

pytestmark = pytest.mark.redis

REDIS_URL = "redis://127.0.0.1:6379/0"
APP = "tests.e2e.apps:app"


def reachable(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def start_server(home: Path, env: dict[str, str], admin_key: str | None = None) -> ServerProcess:
    """A server on a free port; again on another port if another process took that one first
    (the port is free when chosen, not reserved, and other suites run on this machine)."""
    home.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        server = ServerProcess(home=home, app=APP, env_extra=env)
        if admin_key is not None:
            server.admin_key = admin_key
        try:
            return server.start()
        except RuntimeError as exc:
            if "address already in use" not in str(exc).lower() or attempt == 2:
                raise
    raise AssertionError("unreachable")


def start_pair(home: Path, env: dict[str, str]) -> tuple[ServerProcess, ServerProcess]:
    """Two replicas on the same stores and admin key. One after the other: the first migrates."""
    a = start_server(home / "a", env)
    try:
        b = start_server(home / "b", env, admin_key=a.admin_key)
    except BaseException:
        a.stop()
        raise
    return a, b


@pytest.fixture
def replicas(tmp_path: Path, postgres_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    if not reachable(6379):
        missing_service(f"Redis unreachable at {REDIS_URL}")
    env = {
        "SHIPYARD_STATE_URL": REDIS_URL,
        "SHIPYARD_DATABASE_URL": postgres_url,
        "SHIPYARD_RUN_TIMEOUT_S": "5",
    }
    a, b = start_pair(tmp_path, env)
    yield a, b
    for server in (a, b):
        server.stop()


def client(server: ServerProcess) -> httpx.Client:
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def new_session(c: httpx.Client, agent: str) -> str:
    reply = c.post("/v1/sessions", json={"agent": agent})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


def turn(c: httpx.Client, session: str, text: str) -> httpx.Response:
    return c.post(f"/v1/sessions/{session}/turns", json={"input": text})


def history(c: httpx.Client, session: str) -> list[tuple[str, str]]:
    reply = c.get(f"/v1/sessions/{session}")
    assert reply.status_code == 200, reply.text
    return [(m["role"], m["content"]) for m in reply.json()["history"]]


def test_turns_alternate_between_replicas_and_one_dies(
    replicas: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = replicas
    with client(a) as on_a, client(b) as on_b:
        # The historian answers with the number of messages it was given: each turn proves
        # which history it saw, whichever replica ran it.
        session = new_session(on_a, "historian")
        assert turn(on_a, session, "one").json()["output"] == "1 messages so far"
        assert turn(on_b, session, "two").json()["output"] == "3 messages so far"
        assert history(on_a, session) == history(on_b, session)
        assert turn(on_a, session, "three").json()["output"] == "5 messages so far"

        # A second session has a turn in flight on A when A is killed.
        slow = new_session(on_a, "slow_echo")  # its model takes 300 ms
        assert turn(on_a, slow, "first").status_code == 200
        cut: list[BaseException] = []

        def doomed_turn() -> None:
            try:
                turn(on_a, slow, "interrupted")
            except httpx.HTTPError as exc:
                cut.append(exc)

        thread = threading.Thread(target=doomed_turn)
        thread.start()
        time.sleep(0.15)
        assert a.proc is not None
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(timeout=10)
        thread.join(timeout=10)
        assert cut, "the turn in flight on the killed replica should have lost its connection"

        # B carries on with the full history, written through both replicas.
        assert turn(on_b, session, "four").json()["output"] == "7 messages so far"
        assert history(on_b, session) == [
            ("user", "one"),
            ("assistant", "1 messages so far"),
            ("user", "two"),
            ("assistant", "3 messages so far"),
            ("user", "three"),
            ("assistant", "5 messages so far"),
            ("user", "four"),
            ("assistant", "7 messages so far"),
        ]
        runs = on_b.get("/v1/runs", params={"session_id": session}).json()["runs"]
        assert len(runs) == 4  # the shared record store has the turns of both replicas

        # The turn that died with A left nothing half-written. Its lease outlives it until it
        # expires: meanwhile the session answers session_busy rather than interleaving turns.
        assert history(on_b, slow) == [("user", "first"), ("assistant", "echo: first")]
        after = turn(on_b, slow, "after")
        if after.status_code == 409:
            assert after.json()["error"]["code"] == "session_busy"
            assert history(on_b, slow) == [("user", "first"), ("assistant", "echo: first")]
        else:
            assert after.status_code == 200, after.text
            assert history(on_b, slow)[2:] == [("user", "after"), ("assistant", "echo: after")]


SESSIONS, TURNS, CONCURRENCY = 200, 5, 32


def test_200_sessions_x_5_turns_across_two_replicas(
    replicas: tuple[ServerProcess, ServerProcess],
) -> None:
    servers = replicas
    failures: list[str] = []

    async def main() -> list[list[tuple[str, str]]]:
        gate = asyncio.Semaphore(CONCURRENCY)
        # an idle connection is dropped before uvicorn's 5 s keep-alive can close it under a
        # request (httpx's default expiry is the same 5 s: a ReadError when they cross)
        limits = httpx.Limits(
            max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY, keepalive_expiry=2
        )
        clients = [
            httpx.AsyncClient(
                base_url=s.url,
                headers={"Authorization": f"Bearer {s.admin_key}"},
                timeout=60,
                limits=limits,
            )
            for s in servers
        ]

        async def conversation(i: int) -> list[tuple[str, str]]:
            async with gate:
                created = await clients[i % 2].post("/v1/sessions", json={"agent": "echo"})
                assert created.status_code == 201, created.text
                session = created.json()["id"]
                for k in range(TURNS):  # turn k of session i on replica (i + k) % 2
                    reply = await clients[(i + k) % 2].post(
                        f"/v1/sessions/{session}/turns", json={"input": f"s{i} t{k}"}
                    )
                    if reply.status_code != 200 or reply.json()["output"] != f"echo: s{i} t{k}":
                        failures.append(f"s{i} t{k}: {reply.status_code} {reply.text[:200]}")
                detail = await clients[(i + 1) % 2].get(f"/v1/sessions/{session}")
                assert detail.status_code == 200, detail.text
                assert detail.json()["turns"] == TURNS
                return [(m["role"], m["content"]) for m in detail.json()["history"]]

        try:
            return list(await asyncio.gather(*(conversation(i) for i in range(SESSIONS))))
        finally:
            for c in clients:
                await c.aclose()

    histories = asyncio.run(main())
    assert failures == []
    for i, got in enumerate(histories):
        expected = []
        for k in range(TURNS):
            expected += [("user", f"s{i} t{k}"), ("assistant", f"echo: s{i} t{k}")]
        assert got == expected, f"session {i}"


# --- a Redis restart under traffic --------------------------------------------------------------


@dataclass
class PrivateRedis:
    """A ``redis-server`` of this test's own, on a free port, that can be killed and restarted.

    Append-only file, fsynced on every write: what Redis acknowledged survives a ``kill -9``,
    as on a production Redis configured for durability."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            missing_service("redis-server is not installed (for a private Redis to restart)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [str(binary), "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log")]
        argv += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited: {(self.workdir / 'redis.log').read_text()}"
                )
            if self.ping():
                return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer within 10 s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path / "redis").start()
    yield redis
    redis.kill()


@dataclass
class Worker:
    """One client sending turns in a loop, each on its own session."""

    n: int
    sessions: list[str] = field(default_factory=list)
    sent: dict[str, list[tuple[str, int]]] = field(
        default_factory=dict
    )  # session -> (input, status)
    ok_after_restart: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


WORKERS = 8


def test_a_redis_restart_under_traffic(tmp_path: Path, private_redis: PrivateRedis) -> None:
    env = {"SHIPYARD_STATE_URL": private_redis.url, "SHIPYARD_RUN_TIMEOUT_S": "5"}
    server = start_server(tmp_path, env)
    try:
        workers = asyncio.run(_traffic_through_a_restart(server, private_redis))
        assert server.proc is not None and server.proc.poll() is None, "the server restarted"
        with client(server) as c:
            assert c.get("/readyz").status_code == 200
            # A session created after the restart works too.
            fresh = new_session(c, "echo")
            assert turn(c, fresh, "after").status_code == 200
            assert history(c, fresh) == [("user", "after"), ("assistant", "echo: after")]
            for w in workers:
                assert w.ok_after_restart > 0, f"worker {w.n} got no answer after the restart"
                for session, sent in w.sent.items():
                    check_history(history(c, session), sent)
    finally:
        server.stop()


async def _traffic_through_a_restart(server: ServerProcess, redis: PrivateRedis) -> list[Worker]:
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    restarted = asyncio.Event()
    stop = asyncio.Event()
    workers = [Worker(n) for n in range(WORKERS)]

    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as c:

        async def open_session(w: Worker) -> str:
            reply = await c.post("/v1/sessions", json={"agent": "echo"})
            assert reply.status_code == 201, reply.text
            w.sessions.append(reply.json()["id"])
            w.sent[w.sessions[-1]] = []
            return str(w.sessions[-1])

        async def run(w: Worker) -> None:
            session = await open_session(w)
            k = 0
            while not stop.is_set():
                text = f"w{w.n} n{k}"
                k += 1
                reply = await c.post(f"/v1/sessions/{session}/turns", json={"input": text})
                status = reply.status_code
                w.statuses[status] = w.statuses.get(status, 0) + 1
                w.sent[session].append((text, status))
                if status == 200:
                    if restarted.is_set():
                        w.ok_after_restart += 1
                    continue
                # During the outage a turn may fail with 503 store_unavailable; nothing else.
                assert status in (409, 503), f"{text}: {status} {reply.text[:300]}"
                if status == 409 and restarted.is_set():
                    # The turn in flight when Redis died could not release its lease, which
                    # now holds the session until it expires: carry on in a new session.
                    session = await open_session(w)
                await asyncio.sleep(0.02)

        tasks = [asyncio.create_task(run(w)) for w in workers]
        try:
            await asyncio.sleep(1.0)  # traffic before
            redis.kill()
            await asyncio.sleep(1.0)  # traffic into a dead Redis
            await asyncio.to_thread(redis.start)
            restarted.set()
            deadline = asyncio.get_running_loop().time() + 20
            while any(w.ok_after_restart < 3 for w in workers):
                assert asyncio.get_running_loop().time() < deadline, [
                    (w.n, w.statuses, w.ok_after_restart) for w in workers
                ]
                for t in tasks:
                    if t.done():
                        t.result()  # a worker's failed assertion
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
    outage = sum(w.statuses.get(503, 0) for w in workers)
    print(f"statuses: {[w.statuses for w in workers]}; 503s during the outage: {outage}")
    return workers


def check_history(got: list[tuple[str, str]], sent: list[tuple[str, int]]) -> None:
    """Whole turns only (user, then its answer), in the order sent; every turn answered 200 is
    there, none refused with 409 is; a turn answered 503 may be there or not (its commit may
    have reached Redis before the reply was lost)."""
    assert len(got) % 2 == 0, got
    said = [got[i][1] for i in range(0, len(got), 2)]
    for i in range(0, len(got), 2):
        assert got[i][0] == "user" and got[i + 1] == ("assistant", f"echo: {got[i][1]}"), got
    order = [text for text, _ in sent]
    positions = [order.index(text) for text in said]
    assert positions == sorted(set(positions)), f"out of order or duplicated: {said}"
    status = dict(sent)
    assert all(status[text] != 409 for text in said), said
    assert [t for t, s in sent if s == 200] == [t for t in said if status[t] == 200], (sent, said)


def test_a_session_created_while_redis_is_down_is_not_listed(
    tmp_path: Path, private_redis: PrivateRedis
) -> None:
    server = start_server(tmp_path, {"SHIPYARD_STATE_URL": private_redis.url})
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            private_redis.kill()
            refused = client.post("/v1/sessions", json={"agent": "echo"})
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "store_unavailable"
            assert client.get("/v1/sessions").json()["sessions"] == []
    finally:
        server.stop()
