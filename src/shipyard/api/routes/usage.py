"""``/v1/usage``: what the tenant spent this day or month, by agent, model, tenant or key,
summed from the records (runs and their model calls)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from shipyard.api.auth import require
from shipyard.api.errors import responses
from shipyard.api.keys import Principal
from shipyard.api.state import services
from shipyard.stores.records.usage_base import UsageGroup, UsageRow

router = APIRouter(prefix="/v1/usage", tags=["usage"])
Reader = Annotated[Principal, Depends(require("read"))]


class UsageView(BaseModel):
    group_by: UsageGroup
    period: Literal["day", "month"]
    since: datetime = Field(description="The start of the period (UTC).")
    groups: list[UsageRow] = Field(description="Costliest first.")
    total_usd: float
    saved_usd: float = Field(description="What the model caches' answers would have cost.")


@router.get("", response_model=UsageView, responses=responses())
async def get_usage(
    request: Request,
    principal: Reader,
    group_by: UsageGroup = "agent",
    period: Annotated[
        Literal["day", "month"],
        Query(description="Since the start of the current UTC day or month."),
    ] = "day",
) -> UsageView:
    """Tokens and dollars spent since the start of this UTC day (or month), by ``agent``,
    ``model``, ``tenant`` or API ``key`` (a run no key started counts under ``null``). A
    tenant sees its own spending; the operator's admin keys, by ``tenant``, every tenant's."""
    now = datetime.now(UTC)
    since = datetime(now.year, now.month, 1 if period == "month" else now.day, tzinfo=UTC)
    every = group_by == "tenant" and principal.operator
    records = services(request).records
    rows = await records.usage(
        None if every else principal.tenant_id, since=since, group_by=group_by
    )
    total = round(sum(r.cost_usd for r in rows), 10)
    saved = round(sum(r.saved_usd for r in rows), 10)
    return UsageView(
        group_by=group_by, period=period, since=since, groups=rows, total_usd=total, saved_usd=saved
    )
