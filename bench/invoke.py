"""Stateless invoke: `POST /v1/agents/echo/invoke`, Shipyard as it ships beside the bare FastAPI
app, in one run.

Targets (`--targets`, in this order by default):
- ``default``: exactly as `make run` starts it: nothing set but the home folder, the admin key
  and the port; console event logs at info to stderr (a file here), metrics and tracing on;
- ``json``: the production logging configuration (``SHIPYARD_LOG_FORMAT=json``, info);
- ``off``: event logs, metrics and tracing off (observability on vs off is default vs off);
- ``postgres``: as ``default``, with records on PostgreSQL and state on Redis (skipped, with the
  reason, when either is unreachable);
- ``bare``: the bare FastAPI app (records nothing), the ceiling.

Every Shipyard row checks that the runs it counted (answered 200) are in the records as
``succeeded`` (counted before and after the point), or is printed INVALID. Ratios and targets
are in `bench.shipped`.
"""

from __future__ import annotations

import json
import secrets
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench import shipped
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
from bench.loadgen import build_request, fetch, run_load
from bench.records import DATABASE_URL, Check, Records, fresh_database, postgres_unreachable
from bench.servers import HOST, Server, ServerSpec, bin_path, free_port, running_server

PATH = "/v1/agents/echo/invoke"
BODY = json.dumps({"input": "hello"}).encode()
EXPECTED_OUTPUT = "echo: hello"
BUSY_PCT = 15.0  # CPU used by other processes above which a point is flagged as noisy

# What each Shipyard target sets beyond the home folder, the admin key and the port.
SHIPYARD_TARGETS: dict[str, dict[str, str]] = {
    "default": {},
    "json": {"SHIPYARD_LOG_FORMAT": "json"},
    "off": {
        "SHIPYARD_LOG_EVENTS": "false",
        "SHIPYARD_METRICS": "false",
        "SHIPYARD_TRACING": "false",
    },
    "postgres": {"SHIPYARD_DATABASE_URL": DATABASE_URL, "SHIPYARD_STATE_URL": REDIS_URL},
}
TARGETS = (*SHIPYARD_TARGETS, "bare")

COLUMNS = [
    Column("target", "target"),
    Column("concurrency", "conc"),
    Column("rps", "runs/s", "{:,.0f}"),
    Column("p50_ms", "p50 ms", "{:.2f}"),
    Column("p99_ms", "p99 ms", "{:.2f}"),
    Column("cpu_ms_per_run", "CPU ms/run", "{:.3f}"),
    Column("cpu_x_bare", "CPU x bare", "{:.2f}"),
    Column("rps_x_bare", "runs/s x bare", "{:.2f}"),
    Column("p50_delta_ms", "p50 - bare", "{:+.2f}"),
    Column("server_cpu_pct", "srv CPU%", "{:.0f}"),
    Column("other_cpu_pct", "other CPU%", "{:.0f}"),
    Column("errors", "errors"),
    Column("recorded", "recorded"),
    Column("check", "check"),
]


@dataclass
class Target:
    name: str
    spec: ServerSpec
    api_key: str
    records: Records | None  # None: the bare app records nothing


def _uvicorn_bare(port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "bench.apps:bare_app",
        "--host", HOST, "--port", str(port),
        "--no-access-log", "--log-level", "warning", "--loop", "uvloop", "--http", "httptools",
    ]  # fmt: skip


def make_target(
    name: str, port: int, home: Path, config: BenchConfig, env: dict[str, str] | None = None
) -> Target:
    """``bare`` (FastAPI alone), one of `SHIPYARD_TARGETS`, or a Shipyard server with the
    settings ``env`` (another benchmark's target). With ``--fake-shipyard`` a Shipyard target
    runs the bare app, which records nothing: its rows must come out INVALID."""
    key = "sk_bench_" + secrets.token_hex(16)
    if name == "bare":
        return Target(name, ServerSpec(name, _uvicorn_bare(port)), key, records=None)
    if env is None and name not in SHIPYARD_TARGETS:
        raise BenchError(f"unknown target {name!r} (expected one of {', '.join(TARGETS)})")
    env = SHIPYARD_TARGETS[name] if env is None else env
    records = Records(home, env.get("SHIPYARD_DATABASE_URL"))
    if config.fake_shipyard:
        return Target(name, ServerSpec(name, _uvicorn_bare(port)), key, records)
    argv = [
        bin_path("shipyard"), "serve", "--app", "bench.apps:shipyard_app",
        "--host", HOST, "--port", str(port),
    ]  # fmt: skip
    spec = ServerSpec(name, argv, {"SHIPYARD_HOME": str(home), "SHIPYARD_ADMIN_KEY": key, **env})
    return Target(name, spec, key, records)


def _headers(target: Target) -> dict[str, str]:
    return {"Authorization": f"Bearer {target.api_key}", "Content-Type": "application/json"}


async def _sanity_check(server: Server, target: Target) -> list[str]:
    status, body = await fetch(HOST, server.port, "POST", PATH, _headers(target), BODY)
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


async def _point(server: Server, target: Target, config: BenchConfig, c: int) -> Row:
    """One concurrency: the load, then what the records gained during it."""
    progress(f"  {target.name} c={c}: {config.warmup:g}s warm-up + {config.duration:g}s …")
    request = build_request("POST", HOST, server.port, PATH, _headers(target), BODY)
    before = await target.records.runs("invoke") if target.records else {}
    result = await run_load(
        HOST, server.port, request,
        concurrency=c, duration=config.duration, warmup=config.warmup,
        cpu_seconds=server.cpu_seconds,
    )  # fmt: skip
    server.check_alive()
    if result.ok == 0:
        raise BenchError(
            f"{target.name} c={c}: no successful response in {config.duration:g}s "
            f"({result.errors} errors: {result.error_statuses}; first: {result.error_sample})"
        )
    after = await target.records.runs("invoke") if target.records else {}
    row: Row = {"target": target.name, **result.summary()}
    # Every 200 of the point (warm-up included) was recorded before it was answered.
    check = Check("runs", result.answered, before=before, after=after)
    check.expect_records = target.records is not None
    check.apply(row)
    progress(
        f"  {target.name} c={c}: {result.rps:,.0f} runs/s, p50 {_ms(row['p50_ms'])}, "
        f"p99 {_ms(row['p99_ms'])}, CPU {_ms(row['cpu_ms_per_run'])}/run, "
        f"errors {result.errors}, check {row['check']} {row.get('invalid', '')}".rstrip()
    )
    if (row["other_cpu_pct"] or 0) > BUSY_PCT:
        progress(f"    warning: other processes used {row['other_cpu_pct']:.0f}% CPU: noisy point")
    if result.errors:
        progress(f"    errors by kind: {result.error_statuses}; first: {result.error_sample}")
    return row


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} ms"


async def skip_reason(name: str, config: BenchConfig) -> str | None:
    """Why a target cannot be measured here (its services are unreachable), or None."""
    if name != "postgres":
        return None
    if config.fake_shipyard:
        return "needs a real Shipyard server (--fake-shipyard)"
    return await postgres_unreachable() or redis_unreachable()


async def bench_target(
    name: str, config: BenchConfig, result: BenchResult, env: dict[str, str] | None = None
) -> None:
    """Measure one target into `result`, one row per concurrency (``env``: as for
    ``make_target``)."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-", ignore_cleanup_errors=True) as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        port = free_port()
        target = make_target(name, port, home, config, env)
        if target.records is not None and target.records.database_url is not None:
            await fresh_database(target.records.database_url)
        progress(f"starting {name} server on port {port} …")
        async with running_server(
            target.spec, port, Path(tmp), config.startup_timeout, config.pinning.server
        ) as server:
            progress(f"{name} server up (pid {server.pid})")
            result.summary.extend(await _sanity_check(server, target))
            for c in config.concurrencies:
                result.rows.append(await _point(server, target, config, c))
        progress(f"{name} server stopped")


async def run(config: BenchConfig) -> BenchResult:
    result = BenchResult("invoke", COLUMNS)
    result.summary.append(config.pinning.note)
    for name in config.targets:
        reason = await skip_reason(name, config)
        if reason:
            progress(f"{name}: skipped: {reason}")
            result.summary.append(f"skipped {name}: {reason}")
            continue
        try:
            await bench_target(name, config, result)
        except BenchError as exc:
            progress(f"{name}: FAILED: {exc}")
            result.failures.append(f"{name}: {exc}")
    noisy = [r for r in result.rows if (r["other_cpu_pct"] or 0) > BUSY_PCT]
    if noisy:
        points = ", ".join(f"{r['target']} c={r['concurrency']}" for r in noisy)
        result.summary.append(
            f"noisy: other processes used > {BUSY_PCT:.0f}% CPU during {points}; rerun when idle"
        )
    shipped.add_ratios(result.rows)
    result.summary.extend(shipped.report(result.rows, config.concurrencies))
    return result
