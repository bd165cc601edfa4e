"""Stateless invoke: `POST /v1/agents/echo/invoke`, Shipyard against the bare FastAPI ceiling.

Issue targets: >= 2,000 recorded runs/s from one server process, and p50 at concurrency 1
within 1 ms of the bare app.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.common import BenchConfig, BenchError, BenchResult, Column, Row, progress
from bench.loadgen import build_request, fetch, run_load
from bench.servers import HOST, Server, ServerSpec, bin_path, free_port, running_server

PATH = "/v1/agents/echo/invoke"
BODY = json.dumps({"input": "hello"}).encode()
EXPECTED_OUTPUT = "echo: hello"
TARGET_RPS = 2000.0
TARGET_P50_DELTA_MS = 1.0
BUSY_PCT = 15.0  # CPU used by other processes above which a point is flagged as noisy

COLUMNS = [
    Column("target", "target"),
    Column("concurrency", "conc"),
    Column("rps", "runs/s", "{:,.0f}"),
    Column("p50_ms", "p50 ms", "{:.2f}"),
    Column("p99_ms", "p99 ms", "{:.2f}"),
    Column("cpu_ms_per_run", "CPU ms/run", "{:.3f}"),
    Column("server_cpu_pct", "srv CPU%", "{:.0f}"),
    Column("client_cpu_pct", "gen CPU%", "{:.0f}"),
    Column("other_cpu_pct", "other CPU%", "{:.0f}"),
    Column("errors", "errors"),
]


@dataclass
class Target:
    name: str
    spec: ServerSpec
    api_key: str
    records: bool  # a Shipyard server: verify the runs were recorded


def _uvicorn_bare(port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "bench.apps:bare_app",
        "--host", HOST, "--port", str(port),
        "--no-access-log", "--log-level", "warning", "--loop", "uvloop", "--http", "httptools",
    ]  # fmt: skip


def make_target(
    name: str,
    port: int,
    home: Path,
    config: BenchConfig,
    env_extra: dict[str, str] | None = None,
) -> Target:
    """``bare`` (FastAPI alone) or a Shipyard server; ``env_extra`` adds settings (the
    observability benchmark names its own Shipyard targets)."""
    key = "sk_bench_" + secrets.token_hex(16)
    if name == "bare" or config.fake_shipyard:
        return Target(name, ServerSpec(name, _uvicorn_bare(port)), key, records=False)
    if name != "shipyard" and env_extra is None:
        raise BenchError(f"unknown target {name!r} (expected shipyard or bare)")
    argv = [
        bin_path("shipyard"), "serve", "--app", "bench.apps:shipyard_app",
        "--host", HOST, "--port", str(port),
    ]  # fmt: skip
    env = {
        "SHIPYARD_HOME": str(home),
        "SHIPYARD_ADMIN_KEY": key,
        "SHIPYARD_LOG_LEVEL": "warning",
        **(env_extra or {}),
    }
    return Target(name, ServerSpec(name, argv, env), key, records=True)


def _headers(target: Target) -> dict[str, str]:
    return {"Authorization": f"Bearer {target.api_key}"}


async def _sanity_check(server: Server, target: Target) -> list[str]:
    headers = {**_headers(target), "Content-Type": "application/json"}
    status, body = await fetch(HOST, server.port, "POST", PATH, headers, BODY)
    if status != 200:
        raise BenchError(
            f"{target.name}: POST {PATH} -> {status}: {body[:500]!r}\n{server.logs_tail()}"
        )
    try:
        output = json.loads(body).get("output")
    except (ValueError, AttributeError):
        output = None
    if output != EXPECTED_OUTPUT:
        return [f"{target.name}: unexpected invoke answer: {body[:300]!r}"]
    return []


async def _check_recording(server: Server, target: Target) -> str:
    try:
        status, body = await fetch(HOST, server.port, "GET", "/v1/runs?limit=1", _headers(target))
    except (OSError, TimeoutError) as exc:
        return f"GET /v1/runs?limit=1 failed: {exc}"
    if status != 200:
        return f"GET /v1/runs?limit=1 -> {status}: {body[:200]!r}"
    return "GET /v1/runs?limit=1 -> 200"


def count_recorded_runs(home: Path) -> int | None:
    db = home / "shipyard.db"
    if not db.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
    except sqlite3.Error:
        return None


async def _measure(server: Server, target: Target, config: BenchConfig, rows: list[Row]) -> None:
    """One row per concurrency, appended to `rows` as measured."""
    headers = {**_headers(target), "Content-Type": "application/json"}
    request = build_request("POST", HOST, server.port, PATH, headers, BODY)
    for concurrency in config.concurrencies:
        progress(
            f"  {target.name} c={concurrency}: {config.warmup:g}s warm-up + {config.duration:g}s …"
        )
        result = await run_load(
            HOST, server.port, request,
            concurrency=concurrency, duration=config.duration, warmup=config.warmup,
            cpu_seconds=server.cpu_seconds,
        )  # fmt: skip
        server.check_alive()
        if result.ok == 0:
            raise BenchError(
                f"{target.name} c={concurrency}: no successful response in {config.duration:g}s "
                f"({result.errors} errors: {result.error_statuses}; first: {result.error_sample})"
            )
        row: Row = {"target": target.name, **result.summary()}
        rows.append(row)
        progress(
            f"  {target.name} c={concurrency}: {result.rps:,.0f} runs/s, "
            f"p50 {_ms(row['p50_ms'])}, p99 {_ms(row['p99_ms'])}, errors {result.errors}"
        )
        other = row["other_cpu_pct"]
        if other is not None and other > BUSY_PCT:
            progress(f"    warning: other processes used {other:.0f}% CPU: noisy point")
        if result.errors:
            progress(f"    errors by kind: {result.error_statuses}; first: {result.error_sample}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


async def bench_target(
    name: str,
    config: BenchConfig,
    result: BenchResult,
    env_extra: dict[str, str] | None = None,
) -> bool:
    """Measure one target into `result`; True when its runs were verifiably recorded."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-", ignore_cleanup_errors=True) as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        port = free_port()
        target = make_target(name, port, home, config, env_extra)
        progress(f"starting {name} server on port {port} …")
        async with running_server(target.spec, port, Path(tmp), config.startup_timeout) as server:
            progress(f"{name} server up (pid {server.pid})")
            result.summary.extend(await _sanity_check(server, target))
            await _measure(server, target, config, result.rows)
            recording = await _check_recording(server, target) if target.records else None
        progress(f"{name} server stopped")
        if recording is not None:
            count = count_recorded_runs(home)
            answered = sum(r["runs"] for r in result.rows if r["target"] == name)
            recorded = "unknown (no runs table)" if count is None else f"{count:,}"
            result.summary.append(
                f"recording: {recording}; recorded {recorded} runs "
                f"(measured windows answered {answered:,} invokes with 200)"
            )
            return recording.endswith("-> 200")
    return False


def _row(rows: list[Row], target: str, concurrency: int) -> Row | None:
    for row in rows:
        if row["target"] == target and row["concurrency"] == concurrency:
            return row
    return None


def compare(rows: list[Row], config: BenchConfig) -> list[str]:
    lines = []
    for c in config.concurrencies:
        ship, bare = _row(rows, "shipyard", c), _row(rows, "bare", c)
        if ship is None or bare is None:
            continue
        ratio = ship["rps"] / bare["rps"] if bare["rps"] else float("nan")
        delta = _delta(ship, bare)
        delta_text = "n/a" if delta is None else f"{delta:+.2f} ms"
        lines.append(f"shipyard/bare c={c}: throughput {ratio:.2f}x, p50 {delta_text}")
    return lines


def _delta(ship: Row, bare: Row) -> float | None:
    if ship["p50_ms"] is None or bare["p50_ms"] is None:
        return None
    return float(ship["p50_ms"] - bare["p50_ms"])


def _throughput_verdict(rows: list[Row], recorded: bool) -> str:
    ship_rows = [r for r in rows if r["target"] == "shipyard"]
    title = "target >= 2,000 recorded runs/s from one server process"
    if not ship_rows:
        return f"{title}: n/a (no shipyard measurement)"
    best = max(ship_rows, key=lambda r: r["rps"])
    notes = [] if recorded else ["recording not verified"]
    if best["errors"]:
        notes.append(f"{best['errors']} errors")
    ok = best["rps"] >= TARGET_RPS and not notes
    note = f" ({'; '.join(notes)})" if notes else ""
    return (
        f"{title}: {best['rps']:,.0f} runs/s at c={best['concurrency']}{note} -> "
        f"{'PASS' if ok else 'MISS'}"
    )


def _latency_verdict(rows: list[Row]) -> str:
    title = "target p50 at c=1 within 1 ms of the bare app"
    ship, bare = _row(rows, "shipyard", 1), _row(rows, "bare", 1)
    delta = _delta(ship, bare) if ship is not None and bare is not None else None
    if ship is None or bare is None or delta is None:
        return f"{title}: n/a (needs both targets measured at c=1)"
    verdict = "PASS" if delta <= TARGET_P50_DELTA_MS else "MISS"
    return (
        f"{title}: {ship['p50_ms']:.2f} vs {bare['p50_ms']:.2f} ms ({delta:+.2f} ms) -> {verdict}"
    )


def targets_verdict(rows: list[Row], recorded: bool) -> list[str]:
    return [_throughput_verdict(rows, recorded), _latency_verdict(rows)]


async def run(config: BenchConfig) -> BenchResult:
    result = BenchResult("invoke", COLUMNS)
    recorded: dict[str, bool] = {}
    for name in config.targets:
        try:
            recorded[name] = await bench_target(name, config, result)
        except BenchError as exc:
            progress(f"{name}: FAILED: {exc}")
            result.failures.append(f"{name}: {exc}")
    noisy = [r for r in result.rows if (r["other_cpu_pct"] or 0) > BUSY_PCT]
    if noisy:
        points = ", ".join(f"{r['target']} c={r['concurrency']}" for r in noisy)
        result.summary.append(
            f"noisy: other processes used > {BUSY_PCT:.0f}% CPU during {points}; rerun when idle"
        )
    result.summary.extend(compare(result.rows, config))
    result.summary.extend(targets_verdict(result.rows, recorded.get("shipyard", False)))
    return result
