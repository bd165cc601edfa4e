"""``make bench --only memory`` smoke-runs at a tiny size on both stores and reports a row each
(timings are not checked: benchmarks are not tests)."""

from __future__ import annotations

import pytest

from bench import memory
from bench.common import BenchConfig
from tests.conftest import missing_service


async def test_the_memory_bench_measures_both_stores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "SIZES", (40, 60))
    monkeypatch.setattr(memory, "RECALL_RUN_MEMORIES", 20)
    result = await memory.run(BenchConfig(duration=0.05))
    if any("pgvector at" in failure for failure in result.failures):
        missing_service(f"PostgreSQL + pgvector unreachable: {result.failures}")
    assert result.failures == []
    assert [(r["store"], r["size"]) for r in result.rows] == [
        ("sqlite-vec", 40), ("sqlite-vec", 60), ("run, recall off", 0), ("run, recall on", 20),
        ("pgvector", 40), ("pgvector", 60),
    ]  # fmt: skip
    assert all(r["searches"] >= 5 and r["p99_ms"] >= r["p50_ms"] > 0 for r in result.rows)
    assert len(result.summary) == 5
