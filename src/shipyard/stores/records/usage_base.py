"""``UsageRecords``: spending summed from the records, by agent, model, tenant or API key."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel

UsageGroup = Literal["agent", "model", "tenant", "key"]
SeriesGroup = Literal["agent", "model", "tenant"]


class UsageRow(BaseModel):
    """One group's spending: its ``value`` (the agent, model, tenant or key; None: no key),
    and what the model caches saved it."""

    value: str | None
    runs: int = 0
    calls: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cached_calls: int = 0
    """Model calls a model cache answered (``llm.cached`` events)."""
    saved_usd: float = 0.0
    """What those answers would have cost: spending the caches saved."""


class UsagePoint(BaseModel):
    """One group's model calls in one bucket of time (``at``: the bucket's start)."""

    at: datetime
    value: str | None
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


class UsageRecords(Protocol):
    async def usage(
        self, tenant_id: str | None, *, since: datetime, group_by: UsageGroup
    ) -> list[UsageRow]:
        """Spending since ``since``, by ``group_by``, costliest first; one tenant's (None: all
        tenants')."""
        ...

    async def usage_series(
        self,
        tenant_id: str | None,
        *,
        since: datetime,
        until: datetime,
        step_s: int,
        group_by: SeriesGroup,
    ) -> list[UsagePoint]:
        """Spending over time: the model calls (``llm.response``) from ``since`` to ``until``
        (exclusive) in buckets of ``step_s`` seconds from ``since``, by agent, model or tenant;
        by bucket, then value. Buckets without a call are left out."""
        ...
