"""``/ui/costs``: spend by tenant, agent, model and day over the last days, and the budgets.

The sums are the API's: ``/v1/usage``'s (``RecordStore.usage``: by agent and tenant from the
runs, by model from their model calls) over the chosen days, and by day the model calls'
``usage_series`` in buckets of a UTC day. The budgets are ``/v1/budgets``': the tenant
policy's ``budgets`` section and each budget's standing from the governor (``runtime.budget``),
read, never changed here. A tenant sees its own; the operator, by tenant, every tenant's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from shipyard.api.state import services
from shipyard.api.ui.render import page
from shipyard.api.ui.session import CurrentViewer
from shipyard.runtime.budget import Standing
from shipyard.stores.records.usage_base import UsagePoint

router = APIRouter()
DAYS = {"1d": 1, "7d": 7, "30d": 30}
DAY_S = 86400


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
    every = None if viewer.operator else viewer.tenant_id
    groups = {
        by: await records.usage(viewer.tenant_id, since=since, group_by=by)
        for by in ("agent", "model")
    }
    groups["tenant"] = await records.usage(every, since=since, group_by="tenant")
    points = await records.usage_series(
        viewer.tenant_id, since=since, until=now, step_s=DAY_S, group_by="model"
    )
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
        groups=groups,
        by_day=by_day(points, since, DAYS[days]),
        budgets=policy.budgets,
        standing=standing,
        enforced=governor is not None,
    )


def by_day(points: list[UsagePoint], since: datetime, days: int) -> list[Day]:
    """Each day of the range, newest first, a day without a model call included."""
    found = [Day(since + timedelta(days=i)) for i in range(days)]
    for p in points:
        day = found[min(days - 1, (p.at - since).days)]
        day.calls += p.calls
        day.tokens += p.prompt_tokens + p.completion_tokens
        day.cost_usd += p.cost_usd
    return found[::-1]
