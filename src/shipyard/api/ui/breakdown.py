"""Tokens and spend over time by agent, model or tenant: the overview's and costs' charts.

Read from the records' ``usage_series`` (the model calls' ``llm.response`` events, summed per
bucket of time in the database), then folded to the ``TOP`` costliest groups and ``other``,
so a chart stays readable with many agents or tenants.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from shipyard.stores.records.usage_base import UsagePoint, UsageRecords

By = Literal["agent", "model", "tenant"]
TOP = 6
OTHER = "other"


@dataclass(slots=True)
class Group:
    name: str
    calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0


@dataclass(slots=True)
class Breakdown:
    """Each group's totals (costliest first) and its tokens and spend per bucket."""

    by: By
    times: list[float]
    groups: list[Group] = field(default_factory=list)
    tokens: dict[str, list[float]] = field(default_factory=dict)
    cost: dict[str, list[float]] = field(default_factory=dict)

    def chart(self) -> dict[str, Any]:
        """What the page's script draws: one line a group, tokens and spend."""
        names = [g.name for g in self.groups]
        return {
            "by": self.by,
            "labels": names,
            "tokens": [self.tokens[n] for n in names],
            "cost": [self.cost[n] for n in names],
        }


async def breakdown(
    records: UsageRecords,
    tenant_id: str | None,
    by: By,
    *,
    start: datetime,
    end: datetime,
    buckets: int,
) -> Breakdown:
    """``tenant_id`` None: every tenant's (the operator's view by tenant)."""
    step_s = max(1, int((end - start).total_seconds() // buckets))
    points = await records.usage_series(
        tenant_id, since=start, until=end, step_s=step_s, group_by=by
    )
    times = [start.timestamp() + step_s * i for i in range(buckets)]
    return _fold(by, times, step_s, start, points)


def totals_of(points: list[UsagePoint]) -> list[Group]:
    """Each group's sums over every bucket, costliest first."""
    totals: dict[str, Group] = {}
    for p in points:
        group = totals.setdefault(_name(p), Group(_name(p)))
        group.calls += p.calls
        group.tokens += p.prompt_tokens + p.completion_tokens
        group.cost_usd += p.cost_usd
    return sorted(totals.values(), key=lambda g: (-g.cost_usd, -g.tokens, g.name))


def _fold(
    by: By, times: list[float], step_s: int, start: datetime, points: list[UsagePoint]
) -> Breakdown:
    ranked = totals_of(points)
    kept = {g.name for g in ranked[:TOP]}
    result = Breakdown(by, times, ranked[:TOP])
    if len(ranked) > TOP:
        rest = Group(OTHER)
        for g in ranked[TOP:]:
            rest.calls, rest.tokens = rest.calls + g.calls, rest.tokens + g.tokens
            rest.cost_usd += g.cost_usd
        result.groups.append(rest)
    tokens: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(times))
    cost: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(times))
    for p in points:
        name = _name(p) if _name(p) in kept else OTHER
        i = min(len(times) - 1, int((p.at - start).total_seconds() // step_s))
        tokens[name][i] += p.prompt_tokens + p.completion_tokens
        cost[name][i] += p.cost_usd
    result.tokens = {g.name: tokens[g.name] for g in result.groups}
    result.cost = {g.name: cost[g.name] for g in result.groups}
    return result


def _name(point: UsagePoint) -> str:
    return point.value or "—"
