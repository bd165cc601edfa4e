"""Dashboard server time with many runs recorded: the overview (by agent, model, tenant), the
runs list (plain, filtered, searched), a run's page and the costs page, on the embedded SQLite
record store.

The app runs in this process (``httpx.ASGITransport``, no socket), so a request's wall time is
the server's time for it: templates, store reads, the session check. Runs are written straight
into the record store first (``SHIPYARD_BENCH_UI_RUNS``, default 100,000, spread over the last
seven days, one in ten a task's, each with one model call's ``llm.response``), one of them with
a real timeline; each page is then fetched
for ``--duration`` seconds. Issue point: every page under 200 ms of server time with 100k runs.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench.common import BenchConfig, BenchResult, Column, Row, progress
from shipyard import Agent
from shipyard.agents.context import RunRequest
from shipyard.app import App
from shipyard.config import load_settings
from shipyard.runtime.services import Services
from shipyard.stores.records.base import RunRecord
from shipyard.telemetry.events import Event

RUNS = int(os.environ.get("SHIPYARD_BENCH_UI_RUNS", "100000"))
BATCH = 5000
TARGET_MS = 200.0
ADMIN = "sk_shp_bench_ui_" + secrets.token_hex(8)
SPAN = timedelta(days=7)

COLUMNS = [
    Column("page", "page"),
    Column("runs", "runs recorded", "{:,}"),
    Column("count", "requests"),
    Column("p50_ms", "p50 ms", "{:.1f}"),
    Column("p95_ms", "p95 ms", "{:.1f}"),
    Column("verdict", "< 200 ms"),
]


def _call(run: RunRecord, model: str) -> Event:
    """The run's one model call, as the overview's and costs' spending read it."""
    return Event(
        type="llm.response", run_id=run.id, seq=1, ts=run.created_at.timestamp(),
        tenant_id=run.tenant_id, agent=run.agent, trace_id="0" * 32, span_id="1" * 16,
        data={"model": model, "prompt_tokens": 40, "completion_tokens": 12, "cost_usd": 0.00002},
    )  # fmt: skip


def _runs(count: int, now: datetime) -> list[RunRecord]:
    step = SPAN / max(count, 1)
    made = []
    for n in range(count):
        at = now - SPAN + step * n
        ms = int(at.timestamp() * 1000)
        made.append(
            RunRecord(
                id=f"run_{ms:012x}{secrets.token_hex(8)}",
                tenant_id="default",
                agent=("echo", "calc", "search")[n % 3],
                status="failed" if n % 17 == 0 else "succeeded",
                input=f"question {n}",
                output=f"answer {n}",
                prompt_tokens=40,
                completion_tokens=12,
                cost_usd=0.00002,
                task_id=f"task_{n:08d}" if n % 10 == 0 else None,
                created_at=at,
                ended_at=at + timedelta(milliseconds=5 + n % 200),
            )
        )
    return made


async def _fill(services: Services, count: int) -> str:
    now = datetime.now(UTC)
    runs = _runs(count, now - timedelta(seconds=1))
    models = ("openai:gpt-4.1-mini", "openai:gpt-4.1", "anthropic:claude-sonnet-4-5")
    for start in range(0, len(runs), BATCH):
        batch = runs[start : start + BATCH]
        calls = [_call(r, models[n % 3]) for n, r in enumerate(batch)]
        await services.records.write_batch(batch, calls)
    outcome = await services.invoker.invoke(
        RunRequest(tenant_id="default", agent="echo", input="x")
    )
    return outcome.run_id


async def _sign_in(client: httpx.AsyncClient) -> None:
    form = await client.get("/ui/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    reply = await client.post("/ui/login", data={"key": ADMIN, "csrf": token.group(1)})
    assert reply.status_code == 303, reply.text


async def _time(client: httpx.AsyncClient, path: str, config: BenchConfig) -> list[float]:
    end = time.perf_counter() + config.warmup
    while time.perf_counter() < end:
        await client.get(path)
    took: list[float] = []
    end = time.perf_counter() + config.duration
    while time.perf_counter() < end or len(took) < 3:
        start = time.perf_counter()
        reply = await client.get(path)
        took.append((time.perf_counter() - start) * 1e3)
        assert reply.status_code == 200, (path, reply.status_code)
    return sorted(took)


def _row(page: str, took: list[float]) -> Row:
    p95 = took[min(len(took) - 1, int(len(took) * 0.95))]
    return {
        "page": page,
        "runs": RUNS,
        "count": len(took),
        "p50_ms": took[len(took) // 2],
        "p95_ms": p95,
        "verdict": "PASS" if p95 < TARGET_MS else "MISS",
    }


async def run(config: BenchConfig) -> BenchResult:
    result = BenchResult("ui", COLUMNS)
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-ui-") as home:
        settings = load_settings(
            home=Path(home), admin_key=ADMIN, log_events=False, metrics=False, audit=False
        )
        asgi = App(agents=[Agent(name="echo", model="scripted:echo")]).asgi(settings)
        async with asgi.router.lifespan_context(asgi):
            progress(f"ui: recording {RUNS:,} runs")
            run_id = await _fill(asgi.state.services, RUNS)
            transport = httpx.ASGITransport(app=asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                await _sign_in(client)
                for page, path in [
                    ("overview (1h)", "/ui/"),
                    ("overview (24h, by model)", "/ui/?window=24h&by=model"),
                    ("overview (24h, by tenant)", "/ui/?window=24h&by=tenant"),
                    ("runs list", "/ui/runs"),
                    ("runs, agent+task+24h", "/ui/runs?agent=calc&kind=task&within=24h"),
                    ("search, 24h, no match", "/ui/runs?q=nowhere"),
                    ("search, 24h, a match", "/ui/runs?q=question%2099999"),
                    ("search, 7d, no match", "/ui/runs?q=nowhere&within=7d"),
                    ("a run", f"/ui/runs/{run_id}"),
                    ("costs (7 days)", "/ui/costs"),
                ]:
                    progress(f"ui: {page}")
                    result.rows.append(_row(page, await _time(client, path, config)))
    misses = [r["page"] for r in result.rows if r["verdict"] == "MISS"]
    result.summary.append(
        f"p95 under {TARGET_MS:.0f} ms with {RUNS:,} runs: "
        + ("PASS" if not misses else "MISS (" + ", ".join(misses) + ")")
    )
    return result
