"""Compute: the cold start of the Lambda HTTP handler and of ``shipyard serve`` — the time from
a new process to its first answered request (imports, settings, store connections, the app's
start), on the embedded stores in a fresh home folder each time — then, in ``compute_load``,
stateless runs/s with ``serve --workers 1`` and ``2`` and tasks/s through SQS with one worker.

Issue points: cold start of the Lambda handler and of the server, target <= 1 s. The handler
runs in a new ``python`` process invoked with an API Gateway v2 event for ``/healthz``; the
server is ``shipyard serve`` polled on ``/healthz``. Each is started ``RUNS`` times. The bare
interpreter's start (``python -c pass``) is measured beside them: the floor on this machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import compute_load
from bench.common import BenchConfig, BenchError, BenchResult, Column, Row, progress
from bench.servers import free_port

RUNS = 3
TARGET_S = 1.0
ROOT = Path(__file__).resolve().parents[1]
SHIPYARD = str(Path(sys.executable).with_name("shipyard"))
COLUMNS = [
    Column("what", "what"),
    Column("runs", "runs"),
    Column("best_s", "best s", "{:.2f}"),
    Column("median_s", "median s", "{:.2f}"),
    Column("rate", "per s", "{:,.1f}"),
    Column("p50_ms", "p50 ms", "{:.1f}"),
    Column("x_base", "x base", "{:.2f}"),
    Column("check", "check"),
]
_INVOKE = """
import json, sys
from shipyard.serverless.http import handler
event = json.loads(sys.argv[1])
print(handler(event, None)["statusCode"], flush=True)
"""
_EVENT = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/healthz",
    "rawQueryString": "",
    "headers": {"host": "bench.execute-api.local"},
    "requestContext": {
        "http": {
            "method": "GET",
            "path": "/healthz",
            "protocol": "HTTP/1.1",
            "sourceIp": "1.1.1.1",
        },
        "routeKey": "$default",
        "stage": "$default",
    },
    "isBase64Encoded": False,
}


def _env(home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    return env | {"SHIPYARD_HOME": home, "SHIPYARD_LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT)}


async def _handler_once() -> float:
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-cold-") as home:
        started = time.perf_counter()
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _INVOKE, json.dumps(_EVENT), env=_env(home), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 120)
        elapsed = time.perf_counter() - started
        await child.wait()
    if line.strip() != b"200":
        raise RuntimeError(f"the handler answered {line!r}")
    return elapsed


async def _serve_once() -> float:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-cold-") as home:
        started = time.perf_counter()
        child = await asyncio.create_subprocess_exec(
            SHIPYARD, "serve", "--port", str(port), env=_env(home), cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            async with httpx.AsyncClient(timeout=0.5) as client:
                while True:
                    try:
                        if (await client.get(f"http://127.0.0.1:{port}/healthz")).is_success:
                            return time.perf_counter() - started
                    except httpx.HTTPError:
                        pass
                    if child.returncode is not None or time.perf_counter() - started > 120:
                        raise RuntimeError("shipyard serve did not answer within 120 s")
                    await asyncio.sleep(0.01)
        finally:
            child.terminate()
            await child.wait()


async def _python_once() -> float:
    started = time.perf_counter()
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await child.wait()
    return time.perf_counter() - started


async def run(config: BenchConfig) -> BenchResult:
    result = BenchResult("compute", COLUMNS)
    await _cold_starts(result)
    for what, rows in (
        ("serve --workers", compute_load.workers_rows),
        ("SQS tasks", compute_load.sqs_rows),
    ):
        progress(f"compute: {what}")
        try:
            result.rows.extend(await rows(config))
        except (BenchError, OSError, TimeoutError) as exc:
            result.failures.append(f"{what}: {exc}")
    result.summary.append(
        "rates under load: other processes share these cores; compare rows of one run (x base)"
    )
    return result


async def _cold_starts(result: BenchResult) -> None:
    starts = (
        ("python -c pass (the floor)", _python_once),
        ("Lambda HTTP handler", _handler_once),
        ("shipyard serve", _serve_once),
    )
    for what, once in starts:
        progress(f"compute: cold start of {what}")
        try:
            times = [await once() for _ in range(RUNS)]
        except (RuntimeError, TimeoutError, OSError) as exc:
            result.failures.append(f"{what}: {exc}")
            continue
        row: Row = {
            "what": what,
            "runs": RUNS,
            "best_s": min(times),
            "median_s": statistics.median(times),
        }
        result.rows.append(row)
        if once is not _python_once:
            verdict = "PASS" if row["median_s"] <= TARGET_S else "MISS"
            result.summary.append(
                f"{what}: median {row['median_s']:.2f} s (<= {TARGET_S} s: {verdict})"
            )
