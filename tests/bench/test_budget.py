"""``make bench --only budget`` smoke-runs: runs with and without budgets on the SQLite and the
Redis state store, a row each (timings are not checked: benchmarks are not tests)."""

from __future__ import annotations

from bench import budget
from bench.common import BenchConfig
from tests.conftest import missing_service


async def test_the_budget_bench_measures_both_stores() -> None:
    result = await budget.run(BenchConfig(duration=0.05))
    if any("Redis unreachable" in failure for failure in result.failures):
        missing_service(f"Redis unreachable: {result.failures}")
    assert result.failures == []
    assert [(r["store"], r["budget"]) for r in result.rows] == [
        ("sqlite", "none"), ("sqlite", "budget"), ("redis", "none"), ("redis", "budget"),
    ]  # fmt: skip
    assert all(r["runs"] == 50 and r["p50_ms"] > 0 for r in result.rows)
    assert "a model call" in result.rows[1]["note"] and "a model call" in result.rows[3]["note"]
