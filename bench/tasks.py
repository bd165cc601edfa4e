"""Event-driven tasks: `POST /v1/tasks` with the scripted echo agent.

1. Acknowledgement latency: closed-loop `POST /v1/tasks` at concurrency 1 and 8, with no worker
   running (the tasks only pile up in the queue), on RabbitMQ and on the embedded broker.
2. End-to-end throughput through RabbitMQ with one and with two `shipyard worker` processes:
   the workers are up and idle; `TASKS` tasks are submitted as fast as possible (32 connections);
   the clock runs from the first submission until the records hold every task `succeeded`
   (counted in the SQLite records file, read-only). The rate the workers alone sustained — first
   `running` to last `succeeded` transition — is shown beside it.
3. CPU per task, steadier than rates on a machine whose cores are all busy: `DRAIN_TASKS` tasks
   submitted (8 connections) with no worker running, then one worker drains the queue alone;
   the server's CPU per submit and the worker's CPU per task (RabbitMQ's and the load
   generator's own work are not in either); once with the embedded state store, once with the
   state on Redis (as a deployment of several processes has it). Every row shows the CPU per
   task of its processes.

RabbitMQ: every server gets a virtual host of the bench's own, created and deleted with
`rabbitmqctl` (the shared node is never restarted); without RabbitMQ those rows are skipped.

Issue targets: ack p50 <= 5 ms; at least 1,000 tasks/s with two workers.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import (
    REDIS_URL,
    BenchConfig,
    BenchError,
    BenchResult,
    Column,
    Row,
    progress,
    redis_unreachable,
)
from bench.invoke import BUSY_PCT
from bench.loadgen import build_request, fetch, parse_head, system_busy_seconds
from bench.servers import (
    HOST,
    REPO_ROOT,
    Server,
    ServerSpec,
    bin_path,
    free_port,
    running_server,
    session_cpu_seconds,
)

PATH = "/v1/tasks"
APP = "bench.apps:shipyard_app"
BODY = json.dumps({"agent": "echo", "input": "hello"}).encode()
EXPECTED_OUTPUT = "echo: hello"
ACK_CONCURRENCIES = (1, 8)  # the points; other --concurrency values only if neither
TASKS = int(os.environ.get("SHIPYARD_BENCH_TASKS", "3000"))
SUBMIT_CONCURRENCY = 32
WORKER_CONCURRENCY = 32
WORKER_COUNTS = (1, 2)
DRAIN_TASKS = int(os.environ.get("SHIPYARD_BENCH_DRAIN_TASKS", "3000"))
DRAIN_TIMEOUT_S = 60.0
RABBITMQ_URL = os.environ.get("SHIPYARD_BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")
RABBITMQCTL = os.environ.get("SHIPYARD_BENCH_RABBITMQCTL", "rabbitmqctl")
TARGET_ACK_P50_MS = 5.0
TARGET_TASKS_PER_S = 1000.0

COLUMNS = [
    Column("kind", "kind"),
    Column("broker", "broker"),
    Column("concurrency", "conc"),
    Column("workers", "workers"),
    Column("rate", "per s", "{:,.0f}"),
    Column("p50_ms", "p50 ms", "{:.2f}"),
    Column("p99_ms", "p99 ms", "{:.2f}"),
    Column("worker_rate", "workers' per s", "{:,.0f}"),
    Column("submit_rate", "submit per s", "{:,.0f}"),
    Column("server_cpu_pct", "srv CPU%", "{:.0f}"),
    Column("worker_cpu_pct", "wrk CPU%", "{:.0f}"),
    Column("other_cpu_pct", "other CPU%", "{:.0f}"),
    Column("server_us", "srv µs/task", "{:,.0f}"),
    Column("worker_us", "wrk µs/task", "{:,.0f}"),
    Column("errors", "errors"),
]


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
    home: Path
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
    home = workdir / f"home-{name}"
    home.mkdir()
    port, key = free_port(), "sk_bench_" + secrets.token_hex(16)
    env = {"SHIPYARD_HOME": str(home), "SHIPYARD_ADMIN_KEY": key, "SHIPYARD_LOG_LEVEL": "warning"}
    env.update(extra_env or {})
    if broker_url is not None:
        env["SHIPYARD_BROKER_URL"] = broker_url
    if DATABASE_URL and name.startswith("e2e"):
        env["SHIPYARD_DATABASE_URL"] = DATABASE_URL
        with contextlib.suppress(Exception):  # a fresh database has no tables yet
            await _pg("TRUNCATE tasks, task_transitions, runs, run_events, webhook_deliveries")
    argv = [bin_path("shipyard"), "serve", "--app", APP, "--host", HOST, "--port", str(port)]
    spec = ServerSpec(f"shipyard-{name}", argv, env)
    progress(f"  starting shipyard ({name}) on port {port} …")
    async with running_server(spec, port, workdir, config.startup_timeout) as server:
        ship = Stack(server, home, key, env, workdir)
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
    log = ship.workdir / f"worker-{len(ship.workers)}-{n}.log"
    env = {**os.environ, **ship.env, "PYTHONPATH": str(REPO_ROOT)}
    argv = [bin_path("shipyard"), "worker", "--app", APP, "--concurrency", str(n)]
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
            env=env,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    _live_workers.add(proc.pid)
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

    def take(self) -> bool:
        if not self.running or (self.limit is not None and self.sent >= self.limit):
            return False
        self.sent += 1
        return True

    def error(self, kind: str, sample: bytes = b"") -> None:
        self.errors[kind] += 1
        if self.error_sample is None:
            self.error_sample = f"{kind}: {sample[:300]!r}"


async def _slot(port: int, request: bytes, load: Load) -> None:
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


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, -(-len(ordered) * q // 100)) - 1]  # nearest rank


def _per_task_us(cpu: float | None, tasks: int) -> float | None:
    return None if cpu is None or tasks <= 0 else round(cpu / tasks * 1e6)


def _pct(cpu: float | None, elapsed: float) -> float | None:
    return None if cpu is None or elapsed <= 0 else round(cpu * 100 / elapsed, 1)


# --- 1. acknowledgement latency ----------------------------------------------------------------


async def _ack_point(ship: Stack, broker: str, c: int, config: BenchConfig) -> Row:
    progress(f"  ack {broker} c={c}: {config.warmup:g}s warm-up + {config.duration:g}s …")
    request = build_request("POST", HOST, ship.server.port, PATH, ship.headers, BODY)
    load = Load()
    slots = [asyncio.create_task(_slot(ship.server.port, request, load)) for _ in range(c)]
    try:
        await asyncio.sleep(config.warmup)
        cpu0, sys0, t0 = ship.server.cpu_seconds(), system_busy_seconds(), time.perf_counter()
        gen0 = time.process_time()
        load.measuring = True
        await asyncio.sleep(config.duration)
        load.measuring = False
        elapsed = time.perf_counter() - t0
        cpu1, sys1, gen = ship.server.cpu_seconds(), system_busy_seconds(), time.process_time()
        load.running = False
        await asyncio.wait(slots, timeout=5)
    finally:
        load.running = False
        for slot in slots:
            slot.cancel()
        await asyncio.gather(*slots, return_exceptions=True)
    ship.server.check_alive()
    server_cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    other = None
    if sys0 is not None and sys1 is not None and server_cpu is not None:
        other = max(0.0, (sys1 - sys0) - server_cpu - (gen - gen0))
    ms = [ns / 1e6 for ns in load.latencies_ns]
    if not ms:
        raise BenchError(f"ack {broker} c={c}: no 202 ({dict(load.errors)}; {load.error_sample})")
    row: Row = {
        "kind": "ack",
        "broker": broker,
        "concurrency": c,
        "rate": round(len(ms) / elapsed, 1),
        "p50_ms": round(_percentile(ms, 50) or 0, 3),
        "p99_ms": round(_percentile(ms, 99) or 0, 3),
        "server_cpu_pct": _pct(server_cpu, elapsed),
        "other_cpu_pct": _pct(other, elapsed),
        "server_us": _per_task_us(server_cpu, len(ms)),
        "errors": sum(load.errors.values()),
    }
    progress(
        f"  ack {broker} c={c}: {row['rate']:,.0f} acks/s, p50 {row['p50_ms']:.2f} ms, "
        f"p99 {row['p99_ms']:.2f} ms, errors {row['errors']}"
    )
    if load.errors:
        progress(f"    errors: {dict(load.errors)}; first: {load.error_sample}")
    return row


def _ack_points(config: BenchConfig) -> tuple[int, ...]:
    chosen = tuple(c for c in config.concurrencies if c in ACK_CONCURRENCIES)
    return chosen or config.concurrencies


async def _bench_ack(broker: str, config: BenchConfig, tmp: Path) -> list[Row]:
    async with contextlib.AsyncExitStack() as stack_:
        url = await stack_.enter_async_context(rabbit_vhost()) if broker == "rabbitmq" else None
        ship = await stack_.enter_async_context(stack(f"ack-{broker}", url, config, tmp))
        return [await _ack_point(ship, broker, c, config) for c in _ack_points(config)]


def _one(point: Callable[..., Awaitable[Row]], *args: Any) -> Callable[[], Awaitable[list[Row]]]:
    """A point that measures one row, as a maker of a list of rows."""

    async def measure() -> list[Row]:
        return [await point(*args)]

    return measure


# --- 2. end-to-end throughput -------------------------------------------------------------------


def _records(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{home / 'shipyard.db'}?mode=ro", uri=True, timeout=5)


DATABASE_URL = os.environ.get("SHIPYARD_BENCH_DATABASE_URL")
"""Run the end-to-end points with this record store (PostgreSQL; emptied first) instead of a
SQLite file in the home folder."""


async def _pg(sql: str, *args: object) -> list[Any]:
    import asyncpg

    assert DATABASE_URL is not None
    conn = await asyncpg.connect(DATABASE_URL.replace("+asyncpg", ""))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def count_succeeded(home: Path) -> int:
    if DATABASE_URL:
        return int((await _pg("SELECT COUNT(*) FROM tasks WHERE status = 'succeeded'"))[0][0])
    try:
        with contextlib.closing(_records(home)) as db:
            row = db.execute("SELECT COUNT(*) FROM tasks WHERE status = 'succeeded'").fetchone()
            return int(row[0])
    except sqlite3.Error:
        return 0


@dataclass
class Tally:
    tasks: int
    succeeded: int
    extra_successes: int  # "succeeded" transitions beyond one per task: must be 0
    redeliveries: int  # "running" transitions beyond one per task
    worker_span_s: float | None  # first "running" to last "succeeded"


async def tally(home: Path, skip: str) -> Tally:
    """What the records say about every task but ``skip`` (the sanity check's)."""
    if DATABASE_URL:
        return await _pg_tally(skip)
    with contextlib.closing(_records(home)) as db:
        tasks, succeeded = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(status = 'succeeded'), 0) FROM tasks WHERE id != ?",
            (skip,),
        ).fetchone()
        moves = "FROM task_transitions WHERE task_id != ?"
        counts = dict(db.execute(f"SELECT status, COUNT(*) {moves} GROUP BY status", (skip,)))
        first = db.execute(f"SELECT MIN(at) {moves} AND status = 'running'", (skip,))
        last = db.execute(f"SELECT MAX(at) {moves} AND status = 'succeeded'", (skip,))
        start, end = first.fetchone()[0], last.fetchone()[0]
    span = None
    if start and end:
        span = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    return Tally(
        tasks=int(tasks),
        succeeded=int(succeeded),
        extra_successes=int(counts.get("succeeded", 0)) - int(succeeded),
        redeliveries=int(counts.get("running", 0)) - int(tasks),
        worker_span_s=span,
    )


async def _pg_tally(skip: str) -> Tally:
    [(tasks, succeeded)] = await _pg(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE status = 'succeeded') FROM tasks WHERE id != $1",
        skip,
    )
    moves = "FROM task_transitions WHERE task_id != $1"
    counts = dict(await _pg(f"SELECT status, COUNT(*) {moves} GROUP BY status", skip))
    [(start,)] = await _pg(f"SELECT MIN(at) {moves} AND status = 'running'", skip)
    [(end,)] = await _pg(f"SELECT MAX(at) {moves} AND status = 'succeeded'", skip)
    return Tally(
        tasks=int(tasks),
        succeeded=int(succeeded),
        extra_successes=int(counts.get("succeeded", 0)) - int(succeeded),
        redeliveries=int(counts.get("running", 0)) - int(tasks),
        worker_span_s=(end - start).total_seconds() if start and end else None,
    )


async def _wait_succeeded(ship: Stack, want: int, within_s: float) -> int:
    """Poll the records until ``want`` tasks succeeded or ``within_s`` passed; the count."""
    deadline = time.monotonic() + within_s
    done = await count_succeeded(ship.home)
    while done < want and time.monotonic() < deadline:
        ship.server.check_alive()
        await asyncio.sleep(0.02)
        done = await count_succeeded(ship.home)
    return done


async def _throughput_point(workers: int, config: BenchConfig, tmp: Path) -> Row:
    async with rabbit_vhost() as url, stack(f"e2e-{workers}w", url, config, tmp) as ship:
        for _ in range(workers):
            await start_worker(ship, WORKER_CONCURRENCY, config.startup_timeout)
        await _wait_succeeded(ship, 1, 30.0)  # the sanity check's task: the workers consume
        progress(
            f"  e2e rabbitmq, {workers} worker(s) x {WORKER_CONCURRENCY}: submitting {TASKS:,} …"
        )
        request = build_request("POST", HOST, ship.server.port, PATH, ship.headers, BODY)
        load = Load(measuring=True, limit=TASKS)
        loop = asyncio.get_running_loop()
        srv0, wrk0 = ship.cpu_seconds()
        sys0 = system_busy_seconds()
        gen0 = time.process_time()
        t0 = loop.time()
        slots = [
            asyncio.create_task(_slot(ship.server.port, request, load))
            for _ in range(SUBMIT_CONCURRENCY)
        ]
        await asyncio.gather(*slots)
        submitted = loop.time() - t0
        acked = len(load.latencies_ns)
        want = acked + 1  # and the sanity check's task
        done = await _wait_succeeded(ship, want, DRAIN_TIMEOUT_S - (loop.time() - t0))
        elapsed = loop.time() - t0
        srv1, wrk1 = ship.cpu_seconds()
        sys1 = system_busy_seconds()
        gen = time.process_time() - gen0
        counted = await tally(ship.home, ship.first_task)
    server_cpu = srv1 - srv0 if srv0 is not None and srv1 is not None else None
    other = None
    if sys0 is not None and sys1 is not None and server_cpu is not None:
        other = max(0.0, (sys1 - sys0) - server_cpu - (wrk1 - wrk0) - gen)
    row: Row = {
        "kind": "e2e",
        "broker": "rabbitmq",
        "concurrency": SUBMIT_CONCURRENCY,
        "workers": workers,
        "tasks": acked,
        "succeeded": done - 1,
        "rate": round((done - 1) / elapsed, 1),
        "elapsed_s": round(elapsed, 3),
        "submit_rate": round(acked / submitted, 1),
        "worker_rate": round(counted.succeeded / counted.worker_span_s, 1)
        if counted.worker_span_s
        else None,
        "server_cpu_pct": _pct(server_cpu, elapsed),
        "worker_cpu_pct": _pct(wrk1 - wrk0, elapsed),
        "other_cpu_pct": _pct(other, elapsed),
        "server_us": _per_task_us(server_cpu, acked),
        "worker_us": _per_task_us(wrk1 - wrk0, done - 1),
        "errors": sum(load.errors.values()),
        "extra_successes": counted.extra_successes,
        "redeliveries": counted.redeliveries,
    }
    progress(
        f"  e2e {workers} worker(s): {row['succeeded']:,}/{acked:,} succeeded in {elapsed:.2f}s "
        f"= {row['rate']:,.0f} tasks/s (submitted at {row['submit_rate']:,.0f}/s; workers alone "
        f"{row['worker_rate'] or 0:,.0f}/s), errors {row['errors']}"
    )
    if load.errors:
        progress(f"    errors: {dict(load.errors)}; first: {load.error_sample}")
    if row["succeeded"] < acked:
        raise BenchError(
            f"e2e {workers} worker(s): only {row['succeeded']:,} of {acked:,} tasks succeeded "
            f"within {DRAIN_TIMEOUT_S:.0f}s"
        )
    if counted.extra_successes:
        raise BenchError(f"{counted.extra_successes} tasks recorded 'succeeded' more than once")
    return row


# --- 3. CPU per task ------------------------------------------------------------------------------


async def _drain_point(config: BenchConfig, tmp: Path, state: str) -> Row:
    """``state``: ``embedded``, or ``redis`` (the state store of a deployment with several
    processes, where a task's cancel word travels)."""
    name = "drain" if state == "embedded" else f"drain-{state}"
    state_env = {"SHIPYARD_STATE_URL": REDIS_URL} if state == "redis" else {}
    async with rabbit_vhost() as url, stack(name, url, config, tmp, state_env) as ship:
        progress(f"  {name} rabbitmq: submitting {DRAIN_TASKS:,} with no worker …")
        request = build_request("POST", HOST, ship.server.port, PATH, ship.headers, BODY)
        load = Load(measuring=True, limit=DRAIN_TASKS)
        srv0, _ = ship.cpu_seconds()
        await asyncio.gather(*(_slot(ship.server.port, request, load) for _ in range(8)))
        srv1, _ = ship.cpu_seconds()
        acked = len(load.latencies_ns)
        progress(f"  {name} rabbitmq: one worker drains {acked + 1:,} …")
        await start_worker(ship, WORKER_CONCURRENCY, config.startup_timeout)
        _, wrk0 = ship.cpu_seconds()
        t0 = time.monotonic()
        done = await _wait_succeeded(ship, acked + 1, DRAIN_TIMEOUT_S)
        elapsed = time.monotonic() - t0
        _, wrk1 = ship.cpu_seconds()
    if done < acked + 1:
        raise BenchError(f"drain: only {done:,} of {acked + 1:,} tasks succeeded")
    server_cpu = srv1 - srv0 if srv0 is not None and srv1 is not None else None
    row: Row = {
        "kind": "drain",
        "broker": "rabbitmq" if state == "embedded" else f"rabbitmq, {state} state",
        "concurrency": 8,
        "workers": 1,
        "rate": round(done / elapsed, 1),
        "worker_cpu_pct": _pct(wrk1 - wrk0, elapsed),
        "server_us": _per_task_us(server_cpu, acked),
        "worker_us": _per_task_us(wrk1 - wrk0, done),
        "errors": sum(load.errors.values()),
    }
    progress(
        f"  {name}: server {row['server_us'] or 0:,.0f} µs CPU per submit; one worker "
        f"{row['worker_us']:,.0f} µs CPU per task, {row['rate']:,.0f} tasks/s"
    )
    return row


# --- verdicts and the entry point ----------------------------------------------------------------


def _find(rows: list[Row], kind: str, broker: str, key: str, value: int) -> Row | None:
    for row in rows:
        if (row["kind"], row["broker"], row.get(key)) == (kind, broker, value):
            return row
    return None


def verdicts(rows: list[Row]) -> list[str]:
    lines = []
    title = f"target ack p50 <= {TARGET_ACK_P50_MS:g} ms"
    acks = [r for r in rows if r["kind"] == "ack"]
    if not acks:
        lines.append(f"{title}: n/a (not measured)")
    for row in acks:
        ok = row["p50_ms"] <= TARGET_ACK_P50_MS and not row["errors"]
        lines.append(
            f"{title} ({row['broker']}, c={row['concurrency']}): {row['p50_ms']:.2f} ms "
            f"-> {'PASS' if ok else 'MISS'}"
        )
    title = f"target >= {TARGET_TASKS_PER_S:,.0f} tasks/s with two workers (rabbitmq)"
    two = _find(rows, "e2e", "rabbitmq", "workers", 2)
    if two is None:
        lines.append(f"{title}: n/a (not measured)")
    else:
        ok = two["rate"] >= TARGET_TASKS_PER_S and not two["errors"]
        lines.append(
            f"{title}: {two['rate']:,.0f} tasks/s end to end ({two['tasks']:,} tasks in "
            f"{two['elapsed_s']:.2f}s) -> {'PASS' if ok else 'MISS'}"
        )
    return lines


async def run(config: BenchConfig) -> BenchResult:
    result = BenchResult("tasks", COLUMNS)
    if not config.shipyard:
        result.summary.append("skipped: tasks need the shipyard target (the bare app has none)")
        return result
    missing = await rabbit_missing()
    if missing:
        progress(f"  RabbitMQ unavailable: {missing}")
        result.summary.append(f"skipped: RabbitMQ unavailable ({missing})")
    with tempfile.TemporaryDirectory(prefix="bench-tasks-", ignore_cleanup_errors=True) as t:
        tmp = Path(t)
        points: list[tuple[str, Callable[[], Awaitable[list[Row]]]]] = [
            ("ack embedded", lambda: _bench_ack("embedded", config, tmp)),
        ]
        if not missing:
            points.append(("ack rabbitmq", lambda: _bench_ack("rabbitmq", config, tmp)))
            for workers in WORKER_COUNTS:
                points.append(
                    (f"e2e {workers} worker(s)", _one(_throughput_point, workers, config, tmp))
                )
            points.append(("drain", _one(_drain_point, config, tmp, "embedded")))
            if redis_unreachable() is None:
                points.append(("drain redis", _one(_drain_point, config, tmp, "redis")))
        for label, measure in points:
            try:
                result.rows.extend(await measure())
            except (BenchError, OSError, TimeoutError) as exc:
                progress(f"{label}: FAILED: {exc}")
                result.failures.append(f"{label}: {exc}")
    noisy = [r for r in result.rows if r["kind"] == "ack" and (r["other_cpu_pct"] or 0) > BUSY_PCT]
    if noisy:
        points = ", ".join(f"{r['broker']} c={r['concurrency']}" for r in noisy)
        result.summary.append(f"noisy: other processes used > {BUSY_PCT:.0f}% CPU during {points}")
    result.summary.append(
        f"ack rows: no worker running; e2e rows: {TASKS:,} tasks over {SUBMIT_CONCURRENCY} "
        f"connections, workers x {WORKER_CONCURRENCY}, RabbitMQ's CPU counts as other CPU%; "
        f"drain rows: {DRAIN_TASKS:,} queued tasks, then one worker alone, with the embedded "
        f"state store and with the state on Redis (µs/task: CPU per task of the server and of "
        f"the workers); "
        f"{os.cpu_count()} CPUs for server, workers, RabbitMQ and load generator; e2e records "
        f"on {'PostgreSQL (its CPU counts as other CPU%)' if DATABASE_URL else 'a SQLite file'}"
    )
    result.summary.extend(verdicts(result.rows))
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run it as: python -m bench --only tasks")
