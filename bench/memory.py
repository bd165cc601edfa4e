"""Long-term memory: recall latency (p50/p99 of a hybrid search, k=5) and insert throughput at
10k and 100k memories, on SQLite + sqlite-vec and on PostgreSQL + pgvector (the server
``scripts/services.sh`` starts on 5433, ``SHIPYARD_BENCH_PGVECTOR_URL``; a fresh database each
run), through the stores themselves (no HTTP, no embedder: vectors are random, 256 floats, the
size of the default embedder's; texts are drawn from a fixed vocabulary so full text has work).

At each size, ``MEASURED_INSERTS`` memories go in one at a time (one transaction each, as the
API and agents add them: the ``inserts/s`` column), and the rest of the fill in batches of
``SEED_BATCH`` through ``MemoryStore.add_many`` (``batched/s``), so that 100k is seeded in
minutes, not half an hour. ``SHIPYARD_BENCH_MEMORY_SIZES`` (default ``10000,100000``) sets the
store sizes; a smoke run uses a tiny one. Last, a run of an agent with recall on
(``Memory(recall=5)``, the default ``wordllama:`` embedder, a SQLite store of
``RECALL_RUN_MEMORIES``) against the same agent without memory, in process (one invoker, the
scripted model): the cost of recall per run. Issue target: recall p50 <= 5 ms at 100k.
Searches run one at a time for ``--duration`` seconds per point, within one tenant of ten (the
others fill the table).
"""

from __future__ import annotations

import os
import random
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench.common import BenchConfig, BenchResult, Column, Row, progress
from shipyard import Agent, Memory, RunRequest
from shipyard.errors import StoreError
from shipyard.models.embedding import create_embedder, normalize
from shipyard.models.resolver import ModelResolver
from shipyard.runtime.egress import ToolEgress
from shipyard.runtime.invoke import Invoker, RunLimits
from shipyard.runtime.memory import MemoryHook, MemoryService
from shipyard.stores.memory.base import MemoryItem, MemoryScope, MemoryStore, SearchOptions
from shipyard.stores.memory.postgres import PostgresMemoryStore
from shipyard.stores.memory.sqlite import SqliteMemoryStore
from shipyard.testing import ScriptedModel

PGVECTOR_URL = os.environ.get(
    "SHIPYARD_BENCH_PGVECTOR_URL", "postgresql://postgres@127.0.0.1:5433/postgres"
)
SIZES = tuple(
    int(n) for n in os.environ.get("SHIPYARD_BENCH_MEMORY_SIZES", "10000,100000").split(",")
)
DIMS = 256
TENANTS = 10
P50_TARGET_MS = 5.0
WORDS = [f"w{i}" for i in range(2000)]
QUESTION = "what tea does the user like?"

RECALL_RUN_MEMORIES = 1000
MEASURED_INSERTS = 2000
"""Inserts timed one at a time at each size (the rest of the fill goes in batches)."""
SEED_BATCH = 1000

COLUMNS = [
    Column("store", "store"),
    Column("size", "memories"),
    Column("insert_per_s", "inserts/s", "{:,.0f}"),
    Column("batch_per_s", "batched/s", "{:,.0f}"),
    Column("searches", "searches/runs"),
    Column("p50_ms", "p50 ms", "{:.2f}"),
    Column("p99_ms", "p99 ms", "{:.2f}"),
]


def _vector(rng: random.Random) -> list[float]:
    return normalize([rng.gauss(0, 1) for _ in range(DIMS)])


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(12))


def _item(n: int, rng: random.Random, now: datetime) -> MemoryItem:
    return MemoryItem(
        id=f"mem_{n:012d}",
        tenant_id=f"tenant-{n % TENANTS}",
        text=_text(rng),
        created_at=now,
        updated_at=now,
        subject=f"user-{n % 100}",
    )


async def _fill(
    store: MemoryStore, have: int, size: int, rng: random.Random
) -> tuple[float, float]:
    """Fill the store to ``size``: ``MEASURED_INSERTS`` one at a time (the API's and agents'
    path: inserts a second), the rest in batches of ``SEED_BATCH`` (``add_many``: memories a
    second). Vectors are made before the clock starts."""
    now = datetime.now(UTC)
    single = min(MEASURED_INSERTS, size - have)
    items = [(_item(n, rng, now), _vector(rng)) for n in range(have, have + single)]
    started = time.perf_counter()
    for item, vector in items:
        await store.add(item, vector)
    one_by_one = single / (time.perf_counter() - started)
    seeded, spent = 0, 0.0
    for first in range(have + single, size, SEED_BATCH):
        batch = [
            (_item(n, rng, now), _vector(rng)) for n in range(first, min(first + SEED_BATCH, size))
        ]
        started = time.perf_counter()
        await store.add_many(batch)
        spent += time.perf_counter() - started
        seeded += len(batch)
    return one_by_one, seeded / spent if spent else 0.0


async def _recall(store: MemoryStore, config: BenchConfig, rng: random.Random) -> list[float]:
    """Latencies (ms) of hybrid searches in one tenant, for ``config.duration`` seconds."""
    latencies: list[float] = []
    scope = MemoryScope("tenant-0")
    deadline = time.perf_counter() + config.duration
    while time.perf_counter() < deadline or len(latencies) < 5:
        vector, text = _vector(rng), _text(rng)[:20]
        started = time.perf_counter()
        await store.search(scope, vector, text, SearchOptions(limit=5))
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def _measure(store: MemoryStore, name: str, config: BenchConfig, result: BenchResult) -> None:
    rng, have = random.Random(7), 0
    for size in SIZES:
        progress(f"memory: {name} filling to {size}")
        rate, batched = await _fill(store, have, size, rng)
        have = size
        await _recall(store, BenchConfig(duration=0.2), rng)  # warm caches, uncounted
        latencies = await _recall(store, config, rng)
        cuts = statistics.quantiles(latencies, n=100)
        row: Row = {
            "store": name,
            "size": size,
            "insert_per_s": rate,
            "batch_per_s": batched,
            "searches": len(latencies),
            "p50_ms": statistics.median(latencies),
            "p99_ms": cuts[98],
        }
        result.rows.append(row)
        verdict = "PASS" if row["p50_ms"] <= P50_TARGET_MS else "MISS"
        result.summary.append(
            f"{name} at {size}: recall p50 {row['p50_ms']:.2f} ms (<= {P50_TARGET_MS}: {verdict})"
        )


async def _run_latencies(agent: Agent, hooks: list[MemoryHook], config: BenchConfig) -> list[float]:
    """Latencies (ms) of runs of ``agent`` through one invoker, as a server's runs go."""
    egress = ToolEgress()
    invoker = Invoker(
        {agent.name: agent},
        None,
        RunLimits(default_model="scripted:echo"),
        models=ModelResolver(),
        hooks=hooks,
        egress=egress,
    )
    latencies: list[float] = []
    deadline = time.perf_counter() + config.duration
    try:
        while time.perf_counter() < deadline or len(latencies) < 5:
            request = RunRequest(tenant_id="test", agent=agent.name, input=QUESTION)
            started = time.perf_counter()
            await invoker.invoke(request)
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        await egress.aclose()
    return latencies


async def _recall_on_off(folder: Path, config: BenchConfig, result: BenchResult) -> None:
    """Runs with recall on against off: the per-run cost of embedding the input and searching."""
    embedder = create_embedder("wordllama:")
    store = SqliteMemoryStore(
        str(folder / "runs.db"), embedder=embedder.name, dimensions=embedder.dimensions
    )
    service = MemoryService(store, embedder)
    try:
        rng = random.Random(11)
        for _ in range(RECALL_RUN_MEMORIES):
            await service.add("test", _text(rng), agent="recall")
        model = ScriptedModel(echo=True)
        on = Agent(name="recall", model=model, memory=Memory(scope="agent", recall=5))
        off = Agent(name="recall", model=model)
        await _run_latencies(on, [MemoryHook(service, {"recall": on})], BenchConfig(duration=0.2))
        for name, agent, hooks in (
            ("off", off, []),
            ("on", on, [MemoryHook(service, {"recall": on})]),
        ):
            latencies = await _run_latencies(agent, hooks, config)
            result.rows.append(
                {
                    "store": f"run, recall {name}",
                    "size": RECALL_RUN_MEMORIES if name == "on" else 0,
                    "searches": len(latencies),
                    "p50_ms": statistics.median(latencies),
                    "p99_ms": statistics.quantiles(latencies, n=100)[98],
                }
            )
        off_p50, on_p50 = result.rows[-2]["p50_ms"], result.rows[-1]["p50_ms"]
        result.summary.append(f"a run with recall on: +{on_p50 - off_p50:.2f} ms p50 over off")
    finally:
        await service.close()


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PGVECTOR_URL, timeout=3)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def run(config: BenchConfig) -> BenchResult:
    result = BenchResult("memory", COLUMNS)
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-memory-") as folder:
        sqlite = SqliteMemoryStore(str(Path(folder) / "m.db"), embedder="bench", dimensions=DIMS)
        try:
            await _measure(sqlite, "sqlite-vec", config, result)
        finally:
            await sqlite.close()
        progress("memory: runs with recall on and off")
        await _recall_on_off(Path(folder), config, result)
    database = f"shipyard_bench_{secrets.token_hex(4)}"
    try:
        await _admin(f'CREATE DATABASE "{database}"')
    except (OSError, asyncpg.PostgresError) as exc:
        result.failures.append(f"pgvector at {PGVECTOR_URL}: {exc!r}")
        return result
    url = f"{PGVECTOR_URL.rsplit('/', 1)[0]}/{database}"
    pg = PostgresMemoryStore(url, embedder="bench", dimensions=DIMS)
    try:
        await _measure(pg, "pgvector", config, result)
    except StoreError as exc:
        result.failures.append(f"pgvector: {exc.message}")
    finally:
        await pg.close()
        await _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    return result
