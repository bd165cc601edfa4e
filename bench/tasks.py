"""Event-driven tasks: `POST /v1/tasks` with the scripted echo agent, servers and workers as
shipped (default settings).

1. Acknowledgement latency: closed-loop `POST /v1/tasks` at concurrency 1 and 8, with no worker
   running (the tasks only pile up in the queue), on RabbitMQ and on the embedded broker.
2. End-to-end throughput through RabbitMQ with one and with two `shipyard worker` processes,
   with records in a SQLite file and on the production path (records on PostgreSQL, state on
   Redis): the workers are up and idle; `TASKS` tasks are submitted as fast as possible (32
   connections); the clock runs from the first submission until the records hold every task
   `succeeded`. The rate the workers alone sustained — first `running` to last `succeeded`
   transition — is shown beside it.
3. CPU per task, steadier than rates on a machine whose cores are all busy: `DRAIN_TASKS` tasks
   submitted (8 connections) with no worker running, then one worker drains the queue alone;
   the server's CPU per submit and the worker's CPU per task (RabbitMQ's, PostgreSQL's, Redis's
   and the load generator's own work are not in either); with SQLite state and records, with
   the state on Redis, and with records on PostgreSQL and state on Redis.

Every row checks the records it relied on (counted before and after its point), or is printed
INVALID: an acknowledged task is recorded; a task counted as done is `succeeded`, exactly as
many as counted, none twice. Without RabbitMQ, PostgreSQL or Redis the rows that need them are
skipped with the reason.

Issue targets: ack p50 <= 5 ms; at least 1,000 tasks/s with two workers (SQLite records, and
records on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
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
from bench.loadgen import build_request, system_busy_seconds
from bench.records import (
    DATABASE_URL,
    Check,
    invalid_lines,
    is_invalid,
    postgres_unreachable,
    tally,
)
from bench.servers import HOST
from bench.taskstack import (
    BODY,
    PATH,
    Load,
    Stack,
    pct,
    per_task_us,
    percentile,
    rabbit_missing,
    rabbit_vhost,
    stack,
    start_worker,
    submitter,
)

ACK_CONCURRENCIES = (1, 8)  # the points; other --concurrency values only if neither
TASKS = int(os.environ.get("SHIPYARD_BENCH_TASKS", "3000"))
SUBMIT_CONCURRENCY = 32
WORKER_CONCURRENCY = 32
WORKER_COUNTS = (1, 2)
DRAIN_TASKS = int(os.environ.get("SHIPYARD_BENCH_DRAIN_TASKS", "3000"))
DRAIN_TIMEOUT_S = 60.0
TARGET_ACK_P50_MS = 5.0
TARGET_TASKS_PER_S = 1000.0

# The stores of a stack: what its server and workers are given beyond the broker.
STORES: dict[str, dict[str, str]] = {
    "sqlite": {},
    "sqlite+redis": {"SHIPYARD_STATE_URL": REDIS_URL},
    "postgres+redis": {"SHIPYARD_DATABASE_URL": DATABASE_URL, "SHIPYARD_STATE_URL": REDIS_URL},
}

COLUMNS = [
    Column("kind", "kind"),
    Column("broker", "broker"),
    Column("stores", "records+state"),
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
    Column("recorded", "recorded"),
    Column("check", "check"),
]


# --- 1. acknowledgement latency ----------------------------------------------------------------


async def _ack_point(ship: Stack, broker: str, c: int, config: BenchConfig) -> Row:
    progress(f"  ack {broker} c={c}: {config.warmup:g}s warm-up + {config.duration:g}s …")
    request = build_request("POST", HOST, ship.server.port, PATH, ship.headers, BODY)
    before = await ship.records.tasks()
    load = Load()
    slots = [asyncio.create_task(submitter(ship.server.port, request, load)) for _ in range(c)]
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
        "stores": "sqlite",
        "concurrency": c,
        "rate": round(len(ms) / elapsed, 1),
        "p50_ms": round(percentile(ms, 50) or 0, 3),
        "p99_ms": round(percentile(ms, 99) or 0, 3),
        "server_cpu_pct": pct(server_cpu, elapsed),
        "other_cpu_pct": pct(other, elapsed),
        "server_us": per_task_us(server_cpu, len(ms)),
        "errors": sum(load.errors.values()),
    }
    # Every acknowledged task (warm-up included) is recorded, whatever it became since.
    after = await ship.records.tasks()
    Check("tasks", load.acked, status=None, before=before, after=after).apply(row)
    _log(
        row,
        f"ack {broker} c={c}: {row['rate']:,.0f} acks/s, p50 {row['p50_ms']:.2f} ms, "
        f"p99 {row['p99_ms']:.2f} ms, errors {row['errors']}",
    )
    if load.errors:
        progress(f"    errors: {dict(load.errors)}; first: {load.error_sample}")
    return row


def _log(row: Row, text: str) -> None:
    progress(f"  {text}, check {row['check']} {row.get('invalid', '')}".rstrip())


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


async def _wait_succeeded(ship: Stack, want: int, within_s: float) -> int:
    """Poll the records until ``want`` tasks succeeded or ``within_s`` passed; the count."""
    deadline = time.monotonic() + within_s
    done = await ship.succeeded()
    while done < want and time.monotonic() < deadline:
        ship.server.check_alive()
        await asyncio.sleep(0.02)
        done = await ship.succeeded()
    return done


def _tasks_check(row: Row, counted: int, before: dict[str, int], after: dict[str, int]) -> None:
    """Exactly ``counted`` more tasks ``succeeded`` in the records, none twice."""
    check = Check("tasks", counted, exact=True, before=before, after=after)
    check.apply(row)
    if check.gained("succeeded") < counted:
        row["invalid"] += f" (not all done within {DRAIN_TIMEOUT_S:.0f} s)"
    if row.get("extra_successes"):
        row["check"] = "INVALID"
        row["invalid"] = f"{row['extra_successes']} tasks recorded 'succeeded' more than once"


async def _throughput_point(workers: int, stores: str, config: BenchConfig, tmp: Path) -> Row:
    name = f"e2e-{stores}-{workers}w"
    async with rabbit_vhost() as url, stack(name, url, config, tmp, STORES[stores]) as ship:
        for _ in range(workers):
            await start_worker(ship, WORKER_CONCURRENCY, config.startup_timeout)
        if await _wait_succeeded(ship, 1, 30.0) < 1:  # the sanity check's task: they consume
            raise BenchError(f"{name}: the workers ran no task in 30 s")
        before = await ship.records.tasks()
        progress(f"  {name} x {WORKER_CONCURRENCY}: submitting {TASKS:,} …")
        request = build_request("POST", HOST, ship.server.port, PATH, ship.headers, BODY)
        load = Load(measuring=True, limit=TASKS)
        loop = asyncio.get_running_loop()
        srv0, wrk0 = ship.cpu_seconds()
        sys0, gen0, t0 = system_busy_seconds(), time.process_time(), loop.time()
        slots = [
            asyncio.create_task(submitter(ship.server.port, request, load))
            for _ in range(SUBMIT_CONCURRENCY)
        ]
        await asyncio.gather(*slots)
        submitted = loop.time() - t0
        acked = len(load.latencies_ns)
        want = before.get("succeeded", 0) + acked
        done = await _wait_succeeded(ship, want, DRAIN_TIMEOUT_S - (loop.time() - t0))
        elapsed = loop.time() - t0
        srv1, wrk1 = ship.cpu_seconds()
        sys1, gen = system_busy_seconds(), time.process_time() - gen0
        after = await ship.records.tasks()
        counted = await tally(ship.records, ship.first_task)
    gained = done - before.get("succeeded", 0)
    server_cpu = srv1 - srv0 if srv0 is not None and srv1 is not None else None
    other = None
    if sys0 is not None and sys1 is not None and server_cpu is not None:
        other = max(0.0, (sys1 - sys0) - server_cpu - (wrk1 - wrk0) - gen)
    row: Row = {
        "kind": "e2e",
        "broker": "rabbitmq",
        "stores": stores,
        "concurrency": SUBMIT_CONCURRENCY,
        "workers": workers,
        "tasks": acked,
        "rate": round(gained / elapsed, 1),
        "elapsed_s": round(elapsed, 3),
        "submit_rate": round(acked / submitted, 1),
        "worker_rate": round(counted.succeeded / counted.worker_span_s, 1)
        if counted.worker_span_s
        else None,
        "server_cpu_pct": pct(server_cpu, elapsed),
        "worker_cpu_pct": pct(wrk1 - wrk0, elapsed),
        "other_cpu_pct": pct(other, elapsed),
        "server_us": per_task_us(server_cpu, acked),
        "worker_us": per_task_us(wrk1 - wrk0, gained),
        "errors": sum(load.errors.values()),
        "extra_successes": counted.extra_successes,
        "redeliveries": counted.redeliveries,
    }
    _tasks_check(row, acked, before, after)
    _log(
        row,
        f"{name}: {gained:,}/{acked:,} succeeded in {elapsed:.2f}s = {row['rate']:,.0f} tasks/s "
        f"(submitted at {row['submit_rate']:,.0f}/s; workers alone "
        f"{row['worker_rate'] or 0:,.0f}/s), errors {row['errors']}",
    )
    if load.errors:
        progress(f"    errors: {dict(load.errors)}; first: {load.error_sample}")
    return row


# --- 3. CPU per task ------------------------------------------------------------------------------


async def _drain_point(config: BenchConfig, tmp: Path, stores: str) -> Row:
    """``stores``: a key of `STORES` (the state on Redis is where a task's cancel word travels
    in a deployment of several processes)."""
    name = f"drain-{stores}"
    async with rabbit_vhost() as url, stack(name, url, config, tmp, STORES[stores]) as ship:
        progress(f"  {name}: submitting {DRAIN_TASKS:,} with no worker …")
        before = await ship.records.tasks()
        request = build_request("POST", HOST, ship.server.port, PATH, ship.headers, BODY)
        load = Load(measuring=True, limit=DRAIN_TASKS)
        srv0, _ = ship.cpu_seconds()
        await asyncio.gather(*(submitter(ship.server.port, request, load) for _ in range(8)))
        srv1, _ = ship.cpu_seconds()
        queued = len(load.latencies_ns) + 1  # and the sanity check's task
        progress(f"  {name}: one worker drains {queued:,} …")
        await start_worker(ship, WORKER_CONCURRENCY, config.startup_timeout)
        _, wrk0 = ship.cpu_seconds()
        t0 = time.monotonic()
        done = await _wait_succeeded(ship, before.get("succeeded", 0) + queued, DRAIN_TIMEOUT_S)
        elapsed = time.monotonic() - t0
        _, wrk1 = ship.cpu_seconds()
        after = await ship.records.tasks()
    gained = done - before.get("succeeded", 0)
    server_cpu = srv1 - srv0 if srv0 is not None and srv1 is not None else None
    row: Row = {
        "kind": "drain",
        "broker": "rabbitmq",
        "stores": stores,
        "concurrency": 8,
        "workers": 1,
        "rate": round(gained / elapsed, 1),
        "worker_cpu_pct": pct(wrk1 - wrk0, elapsed),
        "server_us": per_task_us(server_cpu, queued - 1),
        "worker_us": per_task_us(wrk1 - wrk0, gained),
        "errors": sum(load.errors.values()),
    }
    _tasks_check(row, queued, before, after)
    _log(
        row,
        f"{name}: server {row['server_us'] or 0:,.0f} µs CPU per submit; one worker "
        f"{row['worker_us'] or 0:,.0f} µs CPU per task, {row['rate']:,.0f} tasks/s",
    )
    return row


# --- verdicts and the entry point ----------------------------------------------------------------


def _find(rows: list[Row], kind: str, stores: str, workers: int) -> Row | None:
    for row in rows:
        if (row["kind"], row["stores"], row.get("workers")) == (kind, stores, workers):
            return row
    return None


def _ok(ok: bool, row: Row) -> str:
    if is_invalid(row):
        return f"MISS (invalid: {row.get('invalid', 'not in the records')})"
    return "PASS" if ok and not row["errors"] else "MISS"


def verdicts(rows: list[Row], skipped: dict[str, str]) -> list[str]:
    lines = []
    title = f"target ack p50 <= {TARGET_ACK_P50_MS:g} ms"
    acks = [r for r in rows if r["kind"] == "ack"]
    if not acks:
        lines.append(f"{title}: MISS (not measured)")
    for row in acks:
        lines.append(
            f"{title} ({row['broker']}, c={row['concurrency']}): {row['p50_ms']:.2f} ms "
            f"-> {_ok(row['p50_ms'] <= TARGET_ACK_P50_MS, row)}"
        )
    for stores in ("sqlite", "postgres+redis"):
        title = f"target >= {TARGET_TASKS_PER_S:,.0f} tasks/s with two workers ({stores})"
        two = _find(rows, "e2e", stores, 2)
        if two is None:
            reason = skipped.get(stores) or skipped.get("rabbitmq") or "not measured"
            lines.append(f"{title}: MISS ({reason})")
            continue
        lines.append(
            f"{title}: {two['rate']:,.0f} tasks/s end to end ({two['tasks']:,} tasks in "
            f"{two['elapsed_s']:.2f}s) -> {_ok(two['rate'] >= TARGET_TASKS_PER_S, two)}"
        )
    pg, lite = _find(rows, "drain", "postgres+redis", 1), _find(rows, "drain", "sqlite", 1)
    if pg and lite and pg.get("worker_us") and lite.get("worker_us"):
        lines.append(
            f"drain: worker CPU per task with records on PostgreSQL {pg['worker_us']:,.0f} µs "
            f"vs SQLite {lite['worker_us']:,.0f} µs ({pg['worker_us'] / lite['worker_us']:.2f}x; "
            f"PostgreSQL's own CPU not counted)"
        )
    return lines


async def _unreachable() -> dict[str, str]:
    """Why each service-backed kind of row cannot be measured here."""
    skipped: dict[str, str] = {}
    if missing := await rabbit_missing():
        skipped["rabbitmq"] = f"RabbitMQ unavailable: {missing}"
    if redis := redis_unreachable():
        skipped["sqlite+redis"] = redis
    if pg := await postgres_unreachable() or redis:
        skipped["postgres+redis"] = pg
    return skipped


def _points(
    config: BenchConfig, tmp: Path, skipped: dict[str, str]
) -> list[tuple[str, Callable[[], Awaitable[list[Row]]]]]:
    points: list[tuple[str, Callable[[], Awaitable[list[Row]]]]] = [
        ("ack embedded", lambda: _bench_ack("embedded", config, tmp)),
    ]
    if "rabbitmq" in skipped:
        return points
    points.append(("ack rabbitmq", lambda: _bench_ack("rabbitmq", config, tmp)))
    for stores in ("sqlite", "postgres+redis"):
        if stores not in skipped:
            for n in WORKER_COUNTS:
                point = _one(_throughput_point, n, stores, config, tmp)
                points.append((f"e2e {stores} {n} worker(s)", point))
    for stores in STORES:
        if stores not in skipped:
            points.append((f"drain {stores}", _one(_drain_point, config, tmp, stores)))
    return points


async def run(config: BenchConfig) -> BenchResult:
    result = BenchResult("tasks", COLUMNS)
    if not config.shipyard:
        result.summary.append("skipped: tasks need a Shipyard target (the bare app has none)")
        return result
    skipped = await _unreachable()
    for what, reason in skipped.items():
        progress(f"  skipped {what} rows: {reason}")
        result.summary.append(f"skipped {what} rows: {reason}")
    with tempfile.TemporaryDirectory(prefix="bench-tasks-", ignore_cleanup_errors=True) as t:
        for label, measure in _points(config, Path(t), skipped):
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
        f"connections, workers x {WORKER_CONCURRENCY}; drain rows: {DRAIN_TASKS:,} queued "
        f"tasks, then one worker alone (µs/task: CPU per task of the server and of the workers); "
        f"{config.pinning.note.split(':')[0]} servers, workers on every CPU; RabbitMQ's, "
        f"PostgreSQL's and Redis's CPU counts as other CPU%"
    )
    result.summary.extend(
        invalid_lines(
            result.rows,
            lambda r: (
                f"{r['kind']} {r['broker']} {r['stores']} c={r['concurrency']}"
                + (f" {r['workers']} worker(s)" if r.get("workers") else "")
            ),
        )
    )
    result.summary.extend(verdicts(result.rows, skipped))
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run it as: python -m bench --only tasks")
