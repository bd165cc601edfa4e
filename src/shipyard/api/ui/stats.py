"""The overview's numbers: runs per minute, error rate, latency percentiles, tokens and spend.

Computed from the runs of the chosen window, read newest first as lean rows
(``RecordStore.run_summaries``: no input, output or metadata decoded) from the window's range
of the primary key, at most ``MAX_RUNS`` (then the overview says it is a sample): no aggregate
query over the whole table.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from shipyard.stores.records.base import RunRecords, RunSummary

Window = Literal["15m", "1h", "6h", "24h"]
WINDOWS: dict[str, timedelta] = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
}
BUCKETS = 60
MAX_RUNS = 5000


@dataclass(slots=True)
class Totals:
    runs: int = 0
    failed: int = 0
    tokens: int = 0
    cost_usd: float = 0.0

    def add(self, run: RunSummary) -> None:
        self.runs += 1
        self.failed += run.status == "failed"
        self.tokens += run.prompt_tokens + run.completion_tokens
        self.cost_usd += run.cost_usd

    @property
    def error_rate(self) -> float:
        return self.failed / self.runs if self.runs else 0.0


@dataclass(slots=True)
class Overview:
    window: str
    start: datetime
    end: datetime
    totals: Totals = field(default_factory=Totals)
    sampled: bool = False
    p50_ms: float | None = None
    p95_ms: float | None = None
    by_agent: dict[str, Totals] = field(default_factory=dict)
    series: dict[str, list[float]] = field(default_factory=dict)

    @property
    def runs_per_minute(self) -> float:
        minutes = (self.end - self.start).total_seconds() / 60
        return self.totals.runs / minutes if minutes else 0.0

    def chart(self) -> dict[str, Any]:
        """What the page's chart script draws (uPlot's columns: times, then one per series)."""
        return {"window": self.window, **self.series}


async def runs_in_window(
    records: RunRecords, tenant_id: str, since: datetime
) -> tuple[list[RunSummary], bool]:
    """The tenant's runs created at or after ``since``, newest first; True if cut at MAX_RUNS."""
    found = await records.run_summaries(tenant_id, since=since, limit=MAX_RUNS + 1)
    return found[:MAX_RUNS], len(found) > MAX_RUNS


async def overview(
    records: RunRecords, tenant_id: str, window: str, *, now: datetime | None = None
) -> Overview:
    end = now or datetime.now(UTC)
    start = end - WINDOWS[window]
    runs, sampled = await runs_in_window(records, tenant_id, start)
    result = Overview(window=window, start=start, end=end, sampled=sampled)
    by_agent: dict[str, Totals] = defaultdict(Totals)
    latencies: list[float] = []
    for run in runs:
        result.totals.add(run)
        by_agent[run.agent].add(run)
        if run.ended_at is not None:
            latencies.append((_aware(run.ended_at) - _aware(run.created_at)).total_seconds() * 1e3)
    result.by_agent = dict(sorted(by_agent.items()))
    result.p50_ms = percentile(latencies, 50)
    result.p95_ms = percentile(latencies, 95)
    result.series = _series(runs, start, end)
    return result


def percentile(values: list[float], pct: float) -> float | None:
    """The nearest-rank percentile; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return round(ordered[rank - 1], 1)


def _series(runs: list[RunSummary], start: datetime, end: datetime) -> dict[str, list[float]]:
    step = (end - start).total_seconds() / BUCKETS
    times = [start.timestamp() + step * i for i in range(BUCKETS)]
    per_minute = 60 / step
    counts, errors, tokens, cost = ([0.0] * BUCKETS for _ in range(4))
    for run in runs:
        i = min(BUCKETS - 1, int((_aware(run.created_at) - start).total_seconds() // step))
        counts[i] += per_minute
        errors[i] += per_minute * (run.status == "failed")
        tokens[i] += run.prompt_tokens + run.completion_tokens
        cost[i] += run.cost_usd
    return {"times": times, "runs": counts, "errors": errors, "tokens": tokens, "cost": cost}


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
