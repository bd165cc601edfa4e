"""The cost governor (``--only budget``), in process: what holding and charging a budget in the
state store adds to a run and to each of its model calls, on SQLite and on Redis, against the
same runs of a tenant without budgets on the same services, in the same run, interleaved.

Each run of the bench agent makes ``CALLS`` calls of the scripted echo model (priced, so every
call is charged). With budgets (a tenant's dollars and tokens per day, dollars per month: three
meters), a run holds its reservation (one atomic step), each call checks it and charges its
cost (one step each; more holding only when a call's worst case passes what the run holds),
and the run gives the rest back (one step). Wall time per run, because the store's round trips
are the cost, and the process's CPU time per run (the store's client, scripts' arguments, the
SQLite store's transactions); the note is the difference of the medians per model call.
"""

from __future__ import annotations

import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis.asyncio as aioredis

import shipyard
from bench.common import (
    REDIS_URL,
    BenchConfig,
    BenchResult,
    Column,
    Row,
    progress,
    redis_unreachable,
)
from shipyard import RunContext, agent
from shipyard.agents.context import RunRequest
from shipyard.app import build_services
from shipyard.config import load_settings
from shipyard.models import prices
from shipyard.models.base import ModelRequest, UserMessage
from shipyard.models.scripted import ScriptedModel
from shipyard.runtime.services import Services
from shipyard.stores.records.policy import Budgets, TenantPolicy

CALLS = 5
MODEL = ScriptedModel(echo=True, name="scripted:bench-budget")
CALL = ModelRequest(messages=(UserMessage(content="how much is left?"),), max_tokens=64)
COLUMNS = [
    Column("store", "state store"),
    Column("budget", "budget"),
    Column("runs", "runs"),
    Column("p50_ms", "run p50 ms", "{:.3f}"),
    Column("cpu_ms", "run CPU p50 ms", "{:.3f}"),
    Column("note", "note"),
]


@agent("spender")
async def spender(ctx: RunContext, input: object) -> str:
    """``CALLS`` model calls."""
    for _ in range(CALLS):
        await ctx.model(MODEL).complete(CALL)
    return "done"


APP = shipyard.App(agents=[spender])
BUDGETS = Budgets(usd_per_day=1e6, tokens_per_day=10**12, usd_per_month=1e7)


@asynccontextmanager
async def _services(home: Path, state_url: str | None) -> AsyncIterator[Services]:
    extra = {} if state_url is None else {"state_url": state_url}
    settings = load_settings(home=home, log_events=False, tenant_cache_s=60, **extra)
    services = build_services(APP, settings)
    await services.records.migrate()
    await services.start()
    try:
        yield services
    finally:
        await services.close()


async def _timed(services: Services, tenant: str) -> tuple[float, float]:
    """A run's wall time and the process's CPU time during it, in ms."""
    wall, cpu = time.perf_counter(), time.process_time()
    await services.invoker.invoke(RunRequest(tenant_id=tenant, agent="spender", input=""))
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


async def _measure(services: Services, runs: int) -> dict[str, list[tuple[float, float]]]:
    """Runs of a tenant without budgets and of one with, interleaved; warm-up runs dropped."""
    tag = secrets.token_hex(4)
    free, metered = f"bench-free-{tag}", f"bench-budget-{tag}"
    await services.tenants.put(metered, TenantPolicy(budgets=BUDGETS), changed_by="bench")
    times: dict[str, list[tuple[float, float]]] = {"none": [], "budget": []}
    for i in range(runs + 10):
        for name, tenant in (("none", free), ("budget", metered)):
            took = await _timed(services, tenant)
            if i >= 10:
                times[name].append(took)
    return times


def _rows(store: str, times: dict[str, list[tuple[float, float]]]) -> list[Row]:
    base = [statistics.median(t[k] for t in times["none"]) for k in (0, 1)]
    rows: list[Row] = []
    for name, found in times.items():
        p50, cpu = (statistics.median(t[k] for t in found) for k in (0, 1))
        wall_extra, cpu_extra = (p50 - base[0]) / CALLS, (cpu - base[1]) / CALLS
        note = f"a model call: {wall_extra:+.3f} ms wall, {cpu_extra:+.3f} ms CPU"
        note = "baseline" if name == "none" else note
        rows.append(
            {
                "store": store,
                "budget": name,
                "runs": len(found),
                "p50_ms": p50,
                "cpu_ms": cpu,
                "note": note,
            }
        )
    progress(
        f"budget on {store}: {rows[-1]['note']} (run p50 {base[0]:.3f} -> {rows[-1]['p50_ms']:.3f})"
    )
    return rows


async def _forget(url: str) -> None:
    """The bench tenants' keys on the shared Redis (budgets keep theirs past their period)."""
    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match="shipyard:{bench-*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def run(config: BenchConfig) -> BenchResult:
    result = BenchResult("budget", COLUMNS)
    prices.register_price(MODEL.name, 0.4, 1.6)
    runs = max(50, int(config.duration * 40))
    try:
        await _both(result, runs)
    finally:
        prices.PRICES.pop(MODEL.name, None)
    result.summary.append(
        f"a run of {CALLS} model calls under three budgets: 1 hold, {CALLS} charges, 1 release "
        "in the state store; the note is (median with - median without) / calls"
    )
    return result


async def _both(result: BenchResult, runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-budget-") as home:
        async with _services(Path(home) / "sqlite", None) as services:
            result.rows += _rows("sqlite", await _measure(services, runs))
        unreachable = redis_unreachable()
        if unreachable is not None:
            result.failures.append(unreachable)
            return
        try:
            async with _services(Path(home) / "redis", REDIS_URL) as services:
                result.rows += _rows("redis", await _measure(services, runs))
        finally:
            await _forget(REDIS_URL)
