"""Session turns: `POST /v1/sessions/{id}/turns` with `scripted:echo`, beside the stateless
`POST /v1/agents/echo/invoke` measured on the same server in the same run, on three servers as
shipped (default settings): ``sqlite`` (records and state in SQLite files), ``redis`` (state on
Redis) and ``postgres`` (the production path: records on PostgreSQL, state on Redis; skipped with
the reason when either is unreachable).

Every row checks that the runs it counted (answered 200) are in the records as ``succeeded``
(counted before and after the point), or is printed INVALID.

Every measured turn runs on a session that already holds about 50 messages: before each point a
pool of sessions is created and pre-filled through the API (one turn whose input is 49 prior
messages, so the session holds 50 once the agent has answered). A session allows one turn at a
time, so each load slot cycles through sessions of its own. Each turn adds two messages, so the
pool is sized from the invoke rate just measured (a turn is an invoke plus state work, so it is
slower) for a session to serve at most `MAX_USES` turns, warm-up included: history before a
turn stays within 50..60 messages, and the table shows the mean actually seen.

Issue target: a turn on Redis costs at most 1.5 ms more than a stateless invoke at p50 (c=1).
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import tempfile
from pathlib import Path

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
from bench.invoke import BODY as INVOKE_BODY
from bench.invoke import BUSY_PCT, EXPECTED_OUTPUT
from bench.invoke import PATH as INVOKE_PATH
from bench.loadgen import LoadResult, build_request, fetch, run_load
from bench.records import (
    DATABASE_URL,
    Check,
    Records,
    fresh_database,
    invalid_lines,
    is_invalid,
    postgres_unreachable,
)
from bench.servers import HOST, Server, ServerSpec, bin_path, free_port, running_server

AGENT = "echo"
TURN_BODY = json.dumps({"input": "hello"}).encode()
PRIOR_MESSAGES = 50
MAX_USES = 6  # turns per session per point, warm-up included: 50, 52, ... 60 prior messages
POOL_CAP = 20_000  # sessions per point
PREFILL_CONCURRENCY = 16
SESSION_TTL_S = 900  # the bench's sessions leave Redis on their own
CONCURRENCIES = (1, 8)  # the points; other --concurrency values are used only if neither
BACKENDS = ("sqlite", "redis", "postgres")
TARGET_P50_DELTA_MS = 1.5
SAMPLE = 10  # sessions whose history is checked after each point

COLUMNS = [
    Column("kind", "kind"),
    Column("state", "state"),
    Column("concurrency", "conc"),
    Column("rps", "runs/s", "{:,.0f}"),
    Column("p50_ms", "p50 ms", "{:.2f}"),
    Column("p99_ms", "p99 ms", "{:.2f}"),
    Column("cpu_ms_per_run", "CPU ms/run", "{:.3f}"),
    Column("server_cpu_pct", "srv CPU%", "{:.0f}"),
    Column("other_cpu_pct", "other CPU%", "{:.0f}"),
    Column("prior_mean", "prior msgs", "{:.1f}"),
    Column("sessions", "sessions"),
    Column("errors", "errors"),
    Column("recorded", "recorded"),
    Column("check", "check"),
]


def prior_messages() -> list[dict[str, str]]:
    """49 messages ending with the user's: with the agent's answer, a history of 50."""
    said = []
    for i in range(PRIOR_MESSAGES // 2):
        said.append({"role": "user", "content": f"earlier question {i}"})
        said.append({"role": "assistant", "content": f"earlier answer {i}"})
    return said[:-1]


PREFILL_BODY = json.dumps({"input": prior_messages()}).encode()


class _Shipyard:
    """One Shipyard server on one state backend, and how to talk to it."""

    def __init__(self, server: Server, key: str, records: Records) -> None:
        self.server = server
        self.records = records
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def call(
        self, method: str, path: str, body: bytes = b"", expect: int = 200
    ) -> dict[str, object]:
        status, raw = await fetch(HOST, self.server.port, method, path, self.headers, body)
        if status != expect:
            raise BenchError(f"{method} {path} -> {status}: {raw[:300]!r}")
        parsed = json.loads(raw) if raw else {}
        assert isinstance(parsed, dict)
        return parsed

    def request(self, path: str, body: bytes) -> bytes:
        return build_request("POST", HOST, self.server.port, path, self.headers, body)

    async def new_session(self) -> str:
        body = json.dumps({"agent": AGENT, "ttl_seconds": SESSION_TTL_S}).encode()
        session = str((await self.call("POST", "/v1/sessions", body, expect=201))["id"])
        answer = await self.call("POST", f"/v1/sessions/{session}/turns", PREFILL_BODY)
        if answer.get("output") != f"echo: earlier question {PRIOR_MESSAGES // 2 - 1}":
            raise BenchError(f"unexpected pre-fill answer: {answer}")
        return session

    async def new_sessions(self, count: int) -> list[str]:
        gate = asyncio.Semaphore(PREFILL_CONCURRENCY)

        async def one() -> str:
            async with gate:
                return await self.new_session()

        return list(await asyncio.gather(*(one() for _ in range(count))))


def _spec(backend: str, port: int, home: Path, key: str) -> ServerSpec:
    argv = [
        bin_path("shipyard"), "serve", "--app", "bench.apps:shipyard_app",
        "--host", HOST, "--port", str(port),
    ]  # fmt: skip
    env = {"SHIPYARD_HOME": str(home), "SHIPYARD_ADMIN_KEY": key}
    if backend in ("redis", "postgres"):
        env["SHIPYARD_STATE_URL"] = REDIS_URL
    if backend == "postgres":
        env["SHIPYARD_DATABASE_URL"] = DATABASE_URL
    return ServerSpec(f"shipyard-{backend}", argv, env)


def _points(config: BenchConfig) -> tuple[int, ...]:
    chosen = tuple(c for c in config.concurrencies if c in CONCURRENCIES)
    return chosen or config.concurrencies


def _prior_stats(sent_per_slot: list[int], pool_per_slot: list[int]) -> tuple[float, int]:
    """Mean and max history length before a turn, over every turn sent (warm-up included)."""
    total_prior = turns = most = 0
    for sent, size in zip(sent_per_slot, pool_per_slot, strict=True):
        q, r = divmod(sent, size)
        for uses, sessions in ((q + 1, r), (q, size - r)):
            # A session used `uses` times saw 50, 52, ... 50 + 2 (uses - 1) messages before.
            total_prior += sessions * (PRIOR_MESSAGES * uses + uses * (uses - 1))
            turns += sessions * uses
            if sessions and uses:
                most = max(most, PRIOR_MESSAGES + 2 * (uses - 1))
    return (total_prior / turns if turns else float("nan")), most


def _row(kind: str, backend: str, result: LoadResult) -> Row:
    return {"kind": kind, "state": backend, **result.summary()}


def _log_point(row: Row, result: LoadResult) -> None:
    extra = f", prior msgs {row['prior_mean']:.1f}" if row.get("prior_mean") else ""
    progress(
        f"  {row['kind']} {row['state']} c={row['concurrency']}: {row['rps']:,.0f} runs/s, "
        f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, errors {row['errors']}{extra}, "
        f"check {row['check']} {row.get('invalid', '')}".rstrip()
    )
    if (row["other_cpu_pct"] or 0) > BUSY_PCT:
        progress(f"    warning: other processes used {row['other_cpu_pct']:.0f}% CPU: noisy point")
    if result.errors:
        progress(f"    errors by kind: {result.error_statuses}; first: {result.error_sample}")


async def _load(
    ship: _Shipyard, config: BenchConfig, c: int, per_slot: list[list[bytes]], kind: str
) -> tuple[LoadResult, Check]:
    """The load, and what the records gained during it (runs of ``kind``)."""
    before = await ship.records.runs(kind)
    result = await run_load(
        HOST, ship.server.port, b"",
        concurrency=c, duration=config.duration, warmup=config.warmup,
        cpu_seconds=ship.server.cpu_seconds, per_slot=per_slot,
    )  # fmt: skip
    ship.server.check_alive()
    if result.ok == 0:
        raise BenchError(
            f"c={c}: no successful response in {config.duration:g}s ({result.errors} errors: "
            f"{result.error_statuses}; first: {result.error_sample})"
        )
    # Every 200 of the point (warm-up included) was recorded before it was answered.
    check = Check("runs", result.answered, before=before, after=await ship.records.runs(kind))
    return result, check


async def _verify(ship: _Shipyard, pools: list[list[str]], sent: list[int]) -> list[str]:
    """A sample of sessions: one history, in order, with exactly the turns that were sent."""
    problems = []
    picks = [(k, j) for k in range(len(pools)) for j in range(len(pools[k]))]
    for k, j in picks[:: max(1, len(picks) // SAMPLE)][:SAMPLE]:
        size = len(pools[k])
        uses = sent[k] // size + (1 if j < sent[k] % size else 0)
        detail = await ship.call("GET", f"/v1/sessions/{pools[k][j]}")
        history = detail["history"]
        assert isinstance(history, list)
        tail = [m["content"] for m in history[PRIOR_MESSAGES:]]
        if len(history) != PRIOR_MESSAGES + 2 * uses or tail != ["hello", "echo: hello"] * uses:
            problems.append(
                f"session {pools[k][j]}: {len(history)} messages after {uses} measured turns "
                f"(expected {PRIOR_MESSAGES + 2 * uses})"
            )
    return problems


async def skip_reason(backend: str) -> str | None:
    """Why ``backend``'s services are unreachable, or None."""
    reason = None
    if backend == "postgres":
        reason = await postgres_unreachable()
    if backend in ("redis", "postgres"):
        reason = reason or redis_unreachable(REDIS_URL)
    return reason


async def _bench_backend(backend: str, config: BenchConfig, result: BenchResult) -> None:
    prefix = f"bench-sessions-{backend}-"
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as t:
        home = Path(t) / "home"
        home.mkdir()
        port, key = free_port(), "sk_bench_" + secrets.token_hex(16)
        spec = _spec(backend, port, home, key)
        database_url = spec.env.get("SHIPYARD_DATABASE_URL")
        if database_url is not None:
            await fresh_database(database_url)
        progress(f"starting shipyard ({backend}) on port {port} …")
        async with running_server(
            spec, port, Path(t), config.startup_timeout, config.pinning.server
        ) as server:
            ship = _Shipyard(server, key, Records(home, database_url))
            answer = await ship.call("POST", INVOKE_PATH, INVOKE_BODY)
            if answer.get("output") != EXPECTED_OUTPUT:
                raise BenchError(f"unexpected invoke answer: {answer}")
            for c in _points(config):
                await _bench_point(ship, backend, c, config, result)


async def _bench_point(
    ship: _Shipyard, backend: str, c: int, config: BenchConfig, result: BenchResult
) -> None:
    progress(f"  invoke {backend} c={c}: {config.warmup:g}s warm-up + {config.duration:g}s …")
    invoke_request = ship.request(INVOKE_PATH, INVOKE_BODY)
    invoked, check = await _load(ship, config, c, [[invoke_request]] * c, "invoke")
    row = _row("invoke", backend, invoked)
    check.apply(row)
    result.rows.append(row)
    _log_point(row, invoked)

    # Sessions for this point: enough that none serves more than MAX_USES turns.
    expected = invoked.rps * (config.warmup + config.duration)
    per_slot = max(1, math.ceil(expected / MAX_USES / c))
    count = min(POOL_CAP, per_slot * c)
    progress(f"  pre-filling {count} sessions with {PRIOR_MESSAGES} messages each …")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    sessions = await ship.new_sessions(count)
    progress(f"    {count / (loop.time() - t0):,.0f} sessions/s (create + one 49-message turn)")
    pools = [sessions[k::c] for k in range(c)]
    requests = [[ship.request(f"/v1/sessions/{s}/turns", TURN_BODY) for s in p] for p in pools]

    progress(f"  turn {backend} c={c}: {config.warmup:g}s warm-up + {config.duration:g}s …")
    turned, check = await _load(ship, config, c, requests, "turn")
    mean, most = _prior_stats(turned.sent_per_slot, [len(p) for p in pools])
    row = {**_row("turn", backend, turned), "prior_mean": round(mean, 1), "sessions": count}
    row["prior_max"] = most
    check.apply(row)
    result.rows.append(row)
    _log_point(row, turned)
    problems = await _verify(ship, pools, turned.sent_per_slot)
    if problems:
        raise BenchError("history check failed: " + "; ".join(problems[:3]))


def _find(rows: list[Row], kind: str, backend: str, c: int) -> Row | None:
    for row in rows:
        if (row["kind"], row["state"], row["concurrency"]) == (kind, backend, c):
            return row
    return None


def compare(rows: list[Row], config: BenchConfig) -> list[str]:
    lines = []
    for backend in BACKENDS:
        for c in _points(config):
            turn, invoke = _find(rows, "turn", backend, c), _find(rows, "invoke", backend, c)
            if turn is None or invoke is None:
                continue
            delta = turn["p50_ms"] - invoke["p50_ms"]
            ratio = turn["rps"] / invoke["rps"] if invoke["rps"] else float("nan")
            lines.append(
                f"turn/invoke {backend} c={c}: throughput {ratio:.2f}x, p50 {delta:+.2f} ms, "
                f"history before a turn {PRIOR_MESSAGES}..{turn['prior_max']} messages "
                f"(mean {turn['prior_mean']:.1f})"
            )
    return lines


def verdict(rows: list[Row]) -> str:
    title = "target: a turn on Redis costs at most 1.5 ms more than a stateless invoke at p50"
    turn, invoke = _find(rows, "turn", "redis", 1), _find(rows, "invoke", "redis", 1)
    if turn is None or invoke is None:
        return f"{title}: n/a (needs turn and invoke on Redis measured at c=1)"
    delta = turn["p50_ms"] - invoke["p50_ms"]
    notes = f" ({turn['errors']} turn errors)" if turn["errors"] else ""
    if is_invalid(turn) or is_invalid(invoke):
        notes += " (invalid: runs not in the records)"
    ok = delta <= TARGET_P50_DELTA_MS and not notes
    return (
        f"{title}: c=1 turn {turn['p50_ms']:.2f} vs invoke {invoke['p50_ms']:.2f} ms "
        f"({delta:+.2f} ms){notes} -> {'PASS' if ok else 'MISS'}"
    )


async def run(config: BenchConfig) -> BenchResult:
    result = BenchResult("sessions", COLUMNS)
    if not config.shipyard:
        result.summary.append("skipped: sessions need the shipyard target (the bare app has none)")
        return result
    for backend in BACKENDS:
        reason = await skip_reason(backend)
        if reason:
            progress(f"{backend}: skipped: {reason}")
            result.summary.append(f"skipped {backend}: {reason}")
            continue
        try:
            await _bench_backend(backend, config, result)
        except (BenchError, OSError, TimeoutError) as exc:
            progress(f"{backend}: FAILED: {exc}")
            result.failures.append(f"{backend}: {exc}")
    noisy = [r for r in result.rows if (r["other_cpu_pct"] or 0) > BUSY_PCT]
    if noisy:
        points = ", ".join(f"{r['kind']} {r['state']} c={r['concurrency']}" for r in noisy)
        result.summary.append(
            f"noisy: other processes used > {BUSY_PCT:.0f}% CPU during {points}; rerun when idle"
        )
    result.summary.append(config.pinning.note)
    if any(r["state"] in ("redis", "postgres") for r in result.rows):
        result.summary.append(
            f"redis and postgres rows: Redis at {REDIS_URL} and PostgreSQL run on this machine "
            f"(not pinned); their CPU counts as other CPU%, not as the server's"
        )
    result.summary.extend(
        invalid_lines(result.rows, lambda r: f"{r['kind']} {r['state']} c={r['concurrency']}")
    )
    result.summary.extend(compare(result.rows, config))
    result.summary.append(verdict(result.rows))
    return result
