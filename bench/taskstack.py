"""What the tasks benchmark runs: a Shipyard server as shipped (pinned like every server), its
`shipyard worker` processes (not pinned), RabbitMQ virtual hosts, and the record store each
stack writes (SQLite in its home, or PostgreSQL, dropped and created again first).

RabbitMQ: every server gets a virtual host of the bench's own, created and deleted with
`rabbitmqctl` (the shared node is never restarted).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import BenchConfig, BenchError, all_cpus, pin, progress
from bench.loadgen import fetch, parse_head
from bench.records import Records, fresh_database
from bench.servers import (
    HOST,
    REPO_ROOT,
    Server,
    ServerSpec,
    bin_path,
    free_port,
    running_server,
    server_env,
    session_cpu_seconds,
)

PATH = "/v1/tasks"
APP = "bench.apps:shipyard_app"
BODY = json.dumps({"agent": "echo", "input": "hello"}).encode()
RABBITMQ_URL = os.environ.get("SHIPYARD_BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")
RABBITMQCTL = os.environ.get("SHIPYARD_BENCH_RABBITMQCTL", "rabbitmqctl")


# --- RabbitMQ virtual hosts ---------------------------------------------------------------------


async def _rabbitmqctl(*args: str) -> tuple[int, str]:
    try:
        proc = await asyncio.create_subprocess_exec(
            RABBITMQCTL,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as exc:
        return 127, f"{RABBITMQCTL}: {exc}"
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return 124, f"{RABBITMQCTL} {args[0]} timed out"
    return int(proc.returncode or 0), out.decode(errors="replace").strip()


@contextlib.asynccontextmanager
async def rabbit_vhost() -> AsyncIterator[str]:
    """A broker URL on a fresh virtual host, deleted afterwards. BenchError without RabbitMQ."""
    vhost = f"shipyard-bench-{secrets.token_hex(4)}"
    code, out = await _rabbitmqctl("add_vhost", vhost)
    if code != 0:
        raise BenchError(f"rabbitmqctl add_vhost failed ({code}): {out[-300:]}")
    try:
        code, out = await _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        if code != 0:
            raise BenchError(f"rabbitmqctl set_permissions failed ({code}): {out[-300:]}")
        yield f"{RABBITMQ_URL.rstrip('/')}/{vhost}"
    finally:
        await _rabbitmqctl("delete_vhost", vhost)


async def rabbit_missing() -> str | None:
    """Why RabbitMQ cannot be used here, or None."""
    if shutil.which(RABBITMQCTL) is None:
        return f"{RABBITMQCTL} not found"
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(HOST, 5672), 2)
        writer.close()
    except (OSError, TimeoutError) as exc:
        return f"nothing listens on {HOST}:5672 ({type(exc).__name__})"
    code, out = await _rabbitmqctl("list_vhosts")
    return None if code == 0 else f"rabbitmqctl list_vhosts failed ({code}): {out[-200:]}"


# --- one Shipyard server and its workers -------------------------------------------------------


@dataclass
class Stack:
    server: Server
    records: Records
    key: str
    env: dict[str, str]
    workdir: Path
    first_task: str = ""  # the sanity check's task
    workers: list[asyncio.subprocess.Process] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}

    def cpu_seconds(self) -> tuple[float | None, float]:
        """(server, workers) CPU seconds so far."""
        workers = sum(session_cpu_seconds(p.pid) or 0.0 for p in self.workers)
        return self.server.cpu_seconds(), workers

    async def succeeded(self) -> int:
        """Tasks ``succeeded`` in this stack's records."""
        return (await self.records.tasks()).get("succeeded", 0)


_live_workers: set[int] = set()


@atexit.register
def _kill_leftover_workers() -> None:
    for pid in list(_live_workers):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


@contextlib.asynccontextmanager
async def stack(
    name: str,
    broker_url: str | None,
    config: BenchConfig,
    workdir: Path,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[Stack]:
    """A server as shipped (``extra_env``: its stores), its first task submitted."""
    home = workdir / f"home-{name}"
    home.mkdir()
    port, key = free_port(), "sk_bench_" + secrets.token_hex(16)
    env = {"SHIPYARD_HOME": str(home), "SHIPYARD_ADMIN_KEY": key, **(extra_env or {})}
    if broker_url is not None:
        env["SHIPYARD_BROKER_URL"] = broker_url
    database_url = env.get("SHIPYARD_DATABASE_URL")
    if database_url is not None:
        await fresh_database(database_url)
    argv = [bin_path("shipyard"), "serve", "--app", APP, "--host", HOST, "--port", str(port)]
    spec = ServerSpec(f"shipyard-{name}", argv, env)
    progress(f"  starting shipyard ({name}) on port {port} …")
    async with running_server(
        spec, port, workdir, config.startup_timeout, config.pinning.server
    ) as server:
        ship = Stack(server, Records(home, database_url), key, env, workdir)
        try:
            status, body = await fetch(HOST, port, "POST", PATH, ship.headers, BODY)
            if status != 202:
                raise BenchError(f"POST {PATH} -> {status}: {body[:300]!r}\n{server.logs_tail()}")
            ship.first_task = str(json.loads(body)["task_id"])
            yield ship
        finally:
            for proc in ship.workers:
                await _stop_worker(proc)


async def start_worker(ship: Stack, n: int, startup_timeout: float) -> None:
    """A `shipyard worker` of ``n`` tasks at once, on every CPU (not pinned)."""
    log = ship.workdir / f"worker-{len(ship.workers)}-{n}.log"
    argv = [bin_path("shipyard"), "worker", "--app", APP, "--concurrency", str(n)]
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
            env=server_env(ship.env),
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    _live_workers.add(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        pin(proc.pid, all_cpus())  # this process (the load generator) is pinned: not inherited
    ship.workers.append(proc)
    deadline = time.monotonic() + startup_timeout
    while "running (" not in log.read_text(errors="replace"):
        if proc.returncode is not None or time.monotonic() > deadline:
            raise BenchError(f"worker did not start:\n{log.read_text(errors='replace')[-2000:]}")
        await asyncio.sleep(0.05)


async def _stop_worker(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 15)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), 5)
    _live_workers.discard(proc.pid)


# --- closed-loop HTTP load: a 202 is a success -------------------------------------------------


@dataclass
class Load:
    running: bool = True
    measuring: bool = False
    latencies_ns: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    error_sample: str | None = None
    sent: int = 0
    limit: int | None = None  # stop after this many requests (all slots together)
    acked: int = 0  # 202s, warm-up included (each must be in the records)

    def take(self) -> bool:
        if not self.running or (self.limit is not None and self.sent >= self.limit):
            return False
        self.sent += 1
        return True

    def error(self, kind: str, sample: bytes = b"") -> None:
        self.errors[kind] += 1
        if self.error_sample is None:
            self.error_sample = f"{kind}: {sample[:300]!r}"


async def submitter(port: int, request: bytes, load: Load) -> None:
    while load.running:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError as exc:
            load.error(f"connect: {type(exc).__name__}")
            await asyncio.sleep(0.05)
            continue
        try:
            while load.take():
                t0 = time.perf_counter_ns()
                writer.write(request)
                head = parse_head(await reader.readuntil(b"\r\n\r\n"))
                if head is None or head.length is None:
                    raise BenchError("a response without Content-Length")
                body = await reader.readexactly(head.length)
                elapsed = time.perf_counter_ns() - t0
                if head.status == 202:
                    load.acked += 1
                    if load.measuring:
                        load.latencies_ns.append(elapsed)
                elif load.measuring or load.limit is not None:
                    load.error(str(head.status), body)
                if head.close:
                    break
            else:
                return
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            load.error(f"connection: {type(exc).__name__}")
        finally:
            writer.close()


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * q / 100)) - 1]  # nearest rank


def per_task_us(cpu: float | None, tasks: int) -> float | None:
    return None if cpu is None or tasks <= 0 else round(cpu / tasks * 1e6)


def pct(cpu: float | None, elapsed: float) -> float | None:
    return None if cpu is None or elapsed <= 0 else round(cpu * 100 / elapsed, 1)
