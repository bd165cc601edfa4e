"""``/ui/costs``: spend by tenant, agent, model and day over the last days, and the budgets.

The sums are the model calls' (``llm.response`` events, what ``/v1/usage`` sums by model),
read through ``RecordStore.usage_series`` in buckets of a UTC day by agent, model and tenant
(an index of the calls by time: no scan of every run). The days before today are read once
per ``CLOSED_DAYS_TTL_S`` and kept (``ClosedDays``): a page view reads today's calls only. The
budgets are ``/v1/budgets``': the tenant
policy's ``budgets`` section and each budget's standing from the governor (``runtime.budget``),
read, never changed here. A tenant sees its own; the operator, by tenant, every tenant's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from shipyard.api.state import services
from shipyard.api.ui.breakdown import By, totals_of
from shipyard.api.ui.render import page
from shipyard.api.ui.session import CurrentViewer
from shipyard.api.ui.state import closed_days
from shipyard.runtime.budget import Standing
from shipyard.stores.records.usage_base import UsagePoint, UsageRecords

router = APIRouter()
DAYS = {"1d": 1, "7d": 7, "30d": 30}
DAY_S = 86400
CLOSED_DAYS_TTL_S = 300.0
BYS: tuple[By, ...] = ("agent", "model", "tenant")


@dataclass(slots=True)
class Day:
    day: datetime
    calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0


@router.get("/costs", include_in_schema=False)
async def costs_page(
    request: Request,
    viewer: CurrentViewer,
    days: Annotated[Literal["1d", "7d", "30d"], Query()] = "7d",
) -> Response:
    """Today and the days before it (UTC): ``days`` of them."""
    records = services(request).records
    now = datetime.now(UTC)
    since = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=DAYS[days] - 1)
    today = datetime(now.year, now.month, now.day, tzinfo=UTC)
    series: dict[By, list[UsagePoint]] = {}
    for by in BYS:
        tenant = None if by == "tenant" and viewer.operator else viewer.tenant_id
        before = await closed_days(request).read(records, tenant, by, since, today)
        live = await records.usage_series(tenant, since=today, until=now, step_s=DAY_S, group_by=by)
        series[by] = before + live
    policy = await services(request).tenants.policy(viewer.tenant_id)
    governor = services(request).governor
    standing: list[Standing] = (
        [] if governor is None else await governor.standing(viewer.tenant_id, policy.budgets)
    )
    return page(
        request,
        "costs.html",
        viewer,
        nav="costs",
        days=days,
        choices=list(DAYS),
        since=since,
        groups={by: totals_of(points) for by, points in series.items()},
        by_day=by_day(series["model"], since, DAYS[days]),
        budgets=policy.budgets,
        standing=standing,
        enforced=governor is not None,
    )


class ClosedDays:
    """The calls of days that have ended, by range and group, kept ``ttl_s`` (at most
    ``size`` ranges, the oldest dropped first): they change only when retention or erasure
    deletes rows, which the page then shows within ``ttl_s``."""

    def __init__(self, ttl_s: float = CLOSED_DAYS_TTL_S, size: int = 256) -> None:
        self.ttl_s, self.size = ttl_s, size
        self._kept: dict[tuple[object, ...], tuple[float, list[UsagePoint]]] = {}

    async def read(
        self,
        records: UsageRecords,
        tenant: str | None,
        by: By,
        since: datetime,
        until: datetime,
    ) -> list[UsagePoint]:
        if since >= until:
            return []
        key = (tenant, by, since, until)
        found = self._kept.get(key)
        if found is not None and time.monotonic() - found[0] < self.ttl_s:
            return found[1]
        points = await records.usage_series(
            tenant, since=since, until=until, step_s=DAY_S, group_by=by
        )
        self._kept.pop(key, None)
        self._kept[key] = (time.monotonic(), points)
        while len(self._kept) > self.size:
            self._kept.pop(next(iter(self._kept)))
        return points


def by_day(points: list[UsagePoint], since: datetime, days: int) -> list[Day]:
    """Each day of the range, newest first, a day without a model call included."""
    found = [Day(since + timedelta(days=i)) for i in range(days)]
    for p in points:
        day = found[min(days - 1, (p.at - since).days)]
        day.calls += p.calls
        day.tokens += p.prompt_tokens + p.completion_tokens
        day.cost_usd += p.cost_usd
    return found[::-1]
