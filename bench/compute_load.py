"""Compute, under load: stateless runs/s of ``shipyard serve --workers 1`` and ``--workers 2``,
and tasks/s end to end through the SQS broker with one worker, each beside its baseline
measured in the same run.

1. ``--workers N``: the invoke benchmark's point (closed loop, ``CONCURRENCY`` connections, the
   scripted echo agent) against one server started with ``--workers 1``, then ``--workers 2``;
   records on PostgreSQL and state on Redis when they answer (else the embedded stores). Neither
   server is pinned (two processes need two cores); the load generator keeps its own CPU.
2. SQS: ``TASKS`` echo tasks submitted as fast as ``SUBMIT_CONCURRENCY`` connections go, to a
   server whose broker is SQS (moto's server, ``SHIPYARD_BENCH_SQS_ENDPOINT``), drained by one
   ``shipyard worker``; the clock runs from the first submission until the records hold every
   task ``succeeded``. Baseline: the same with the embedded broker (the default).

On a machine whose cores other work keeps busy, rates move from run to run: read the ratios.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
from pathlib import Path

from bench.common import BenchConfig, BenchError, Row, progress
from bench.invoke import _point, make_target, skip_reason
from bench.loadgen import build_request
from bench.records import fresh_database
from bench.servers import HOST, free_port, running_server
from bench.taskstack import BODY, PATH, Load, Stack, stack, start_worker, submitter

CONCURRENCY = 32
TASKS = int(os.environ.get("SHIPYARD_BENCH_SQS_TASKS", "300"))
SUBMIT_CONCURRENCY = 8
WORKER_CONCURRENCY = 16
DRAIN_TIMEOUT_S = 300.0
SQS_ENDPOINT = os.environ.get("SHIPYARD_BENCH_SQS_ENDPOINT", "http://127.0.0.1:18400")
SQS_ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_ENDPOINT_URL": SQS_ENDPOINT,
    "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
    "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
}


async def workers_rows(config: BenchConfig) -> list[Row]:
    """Stateless runs/s with ``--workers 1`` and ``2``; the second row's ratio to the first."""
    stores = "postgres" if await skip_reason("postgres", config) is None else "default"
    rows = []
    for workers in (1, 2):
        row = await _workers_point(stores, workers, config)
        rows.append(row)
    rows[1]["x_base"] = rows[1]["rate"] / rows[0]["rate"] if rows[0]["rate"] else None
    return rows


async def _workers_point(stores: str, workers: int, config: BenchConfig) -> Row:
    with tempfile.TemporaryDirectory(prefix="bench-workers-", ignore_cleanup_errors=True) as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        port = free_port()
        target = make_target(stores, port, home, config)
        target.spec.argv += ["--workers", str(workers)]
        if target.records is not None and target.records.database_url is not None:
            await fresh_database(target.records.database_url)
        progress(f"compute: shipyard serve --workers {workers} ({stores} stores)")
        async with running_server(target.spec, port, Path(tmp), config.startup_timeout) as srv:
            point = await _point(srv, target, config, CONCURRENCY)
    return {
        "what": f"serve --workers {workers}: invoke runs/s ({stores}, c={CONCURRENCY})",
        "rate": point["rps"],
        "p50_ms": point["p50_ms"],
        "check": point["check"],
    }


async def sqs_rows(config: BenchConfig) -> list[Row]:
    """Tasks/s through the embedded broker (the baseline), then through SQS."""
    with tempfile.TemporaryDirectory(prefix="bench-sqs-", ignore_cleanup_errors=True) as tmp:
        base = await _tasks_point("embedded", None, {}, config, Path(tmp))
        prefix = f"bench{secrets.token_hex(4)}"
        url = f"sqs://{prefix}?visibility_s=30&wait_s=1"
        try:
            sqs = await _tasks_point("sqs (moto)", url, SQS_ENV, config, Path(tmp))
        finally:
            await _delete_queues(prefix)
    sqs["x_base"] = sqs["rate"] / base["rate"] if base["rate"] else None
    return [base, sqs]


async def _tasks_point(
    broker: str, url: str | None, env: dict[str, str], config: BenchConfig, tmp: Path
) -> Row:
    name = f"tasks-{broker.split()[0]}"
    async with stack(name, url, config, tmp, env) as ship:
        await start_worker(ship, WORKER_CONCURRENCY, config.startup_timeout)
        if await _wait_succeeded(ship, 1, 60.0) < 1:
            raise BenchError(f"{name}: the worker ran no task in 60 s")
        progress(f"compute: {TASKS} tasks through {broker}, one worker …")
        request = build_request("POST", HOST, ship.server.port, PATH, ship.headers, BODY)
        load = Load(measuring=True, limit=TASKS)
        started = time.monotonic()
        await asyncio.gather(
            *(submitter(ship.server.port, request, load) for _ in range(SUBMIT_CONCURRENCY))
        )
        want = 1 + load.acked
        done = await _wait_succeeded(ship, want, DRAIN_TIMEOUT_S)
        elapsed = time.monotonic() - started
    if done < want or load.errors:
        raise BenchError(f"{name}: {done - 1}/{load.acked} done, errors {dict(load.errors)}")
    progress(f"  {broker}: {load.acked} tasks in {elapsed:.1f} s = {load.acked / elapsed:.1f}/s")
    return {
        "what": f"tasks/s end to end, {broker}, 1 worker x {WORKER_CONCURRENCY}",
        "runs": load.acked,
        "rate": load.acked / elapsed,
        "check": "ok",
    }


async def _wait_succeeded(ship: Stack, want: int, within_s: float) -> int:
    deadline = time.monotonic() + within_s
    done = await ship.succeeded()
    while done < want and time.monotonic() < deadline:
        ship.server.check_alive()
        await asyncio.sleep(0.1)
        done = await ship.succeeded()
    return done


async def _delete_queues(prefix: str) -> None:
    from aiobotocore.session import get_session

    client = get_session().create_client(
        "sqs",
        region_name=SQS_ENV["AWS_REGION"],
        endpoint_url=SQS_ENDPOINT,
        aws_access_key_id=SQS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=SQS_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    async with client as sqs:
        answer = await sqs.list_queues(QueueNamePrefix=prefix)
        for queue_url in answer.get("QueueUrls", []):
            await sqs.delete_queue(QueueUrl=queue_url)
