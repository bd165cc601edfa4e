"""``python -m bench --only routing`` in its smallest form: it measures and reports."""

from __future__ import annotations

from bench import routing
from bench.common import BenchConfig


async def test_the_routing_bench_reports_latency_overhead_and_quality() -> None:
    result = await routing.run(BenchConfig(duration=0.1))
    what = [r["what"] for r in result.rows]
    assert what[:4] == ["decision p50", "decision p99", "run CPU plain", "run CPU routed"]
    assert "CV learned (unseen subjects)" in what and "CV prompt_length (unseen subjects)" in what
    assert "CV learned (seen subjects)" in what
    assert any("target <= 1 ms" in line for line in result.summary)
