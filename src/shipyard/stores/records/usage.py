"""``SqlUsageRecords``: spending summed from the records (``GET /v1/usage``).

``usage_series``: the model calls' spending over time, in buckets, by agent, model or tenant
(the dashboard's overview and costs pages).

By ``agent`` or ``tenant``: the runs' own totals (tokens and cost of every model call of a run,
failed runs included). By ``model``: the ``llm.response`` events (one per model call). By
``key``: the runs, under the API key their ``run.started`` event names (a run started by no key
— a worker's task, a test — counts under none). What the model caches saved comes from the
``llm.cached`` events, of the group's runs (or of the model).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from shipyard.stores.records._database import Database
from shipyard.stores.records.schema import MODEL_CALL, run_events, runs
from shipyard.stores.records.usage_base import SeriesGroup, UsageGroup, UsagePoint, UsageRow


class SqlUsageRecords:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def usage(
        self, tenant_id: str | None, *, since: datetime, group_by: UsageGroup
    ) -> list[UsageRow]:
        query = _by_model(since) if group_by == "model" else _by_run(since, group_by)
        if tenant_id is not None:
            table = run_events if group_by == "model" else runs
            query = query.where(table.c.tenant_id == tenant_id)
        rows = await self._db.fetch("usage", query.order_by(sa.desc("cost_usd"), "value"))
        return [UsageRow.model_validate(_numbers(row)) for row in rows]

    async def usage_series(
        self,
        tenant_id: str | None,
        *,
        since: datetime,
        until: datetime,
        step_s: int,
        group_by: SeriesGroup,
    ) -> list[UsagePoint]:
        query = _series(since, until, step_s, group_by)
        if tenant_id is not None:
            query = query.where(run_events.c.tenant_id == tenant_id)
        rows = await self._db.fetch("usage_series", query.order_by("bucket", "value"))
        step = timedelta(seconds=step_s)
        return [
            UsagePoint.model_validate(_numbers(row) | {"at": since + step * row["bucket"]})
            for row in rows
        ]


def _by_run(since: datetime, group_by: UsageGroup) -> sa.Select[Any]:
    c = runs.c
    hits = _hits_by_run(since)
    sums = (
        sa.func.count().label("runs"),
        sa.func.sum(c.prompt_tokens).label("prompt_tokens"),
        sa.func.sum(c.completion_tokens).label("completion_tokens"),
        sa.func.sum(c.cost_usd).label("cost_usd"),
        sa.func.sum(hits.c.cached_calls).label("cached_calls"),
        sa.func.sum(hits.c.saved_usd).label("saved_usd"),
    )
    joined = runs.outerjoin(hits, hits.c.run_id == c.id)
    if group_by != "key":
        value = (c.agent if group_by == "agent" else c.tenant_id).label("value")
        return (
            sa.select(value, *sums).select_from(joined).where(c.created_at >= since).group_by(value)
        )
    started = run_events.alias("started")
    key = started.c.data["key_id"].as_string().label("value")
    joined = joined.outerjoin(
        started, sa.and_(started.c.run_id == c.id, started.c.type == "run.started")
    )
    return sa.select(key, *sums).select_from(joined).where(c.created_at >= since).group_by(key)


def _hits_by_run(since: datetime) -> sa.Subquery:
    """Each run's cache hits since ``since`` and what they saved."""
    e = run_events.c
    return (
        sa.select(
            e.run_id,
            sa.func.count().label("cached_calls"),
            sa.func.sum(e.data["saved_usd"].as_float()).label("saved_usd"),
        )
        .where(e.type == "llm.cached", e.ts >= since.timestamp())
        .group_by(e.run_id)
        .subquery("hits")
    )


def _by_model(since: datetime) -> sa.Select[Any]:
    e = run_events.c
    call, hit = e.type == "llm.response", e.type == "llm.cached"

    def of(when: sa.ColumnElement[bool], value: Any) -> Any:
        return sa.func.sum(sa.case((when, value), else_=0))

    model = e.data["model"].as_string().label("value")
    return (
        sa.select(
            model,
            sa.func.count(sa.distinct(sa.case((call, e.run_id)))).label("runs"),
            of(call, 1).label("calls"),
            of(call, e.data["prompt_tokens"].as_integer()).label("prompt_tokens"),
            of(call, e.data["completion_tokens"].as_integer()).label("completion_tokens"),
            of(call, e.data["cost_usd"].as_float()).label("cost_usd"),
            of(hit, 1).label("cached_calls"),
            of(hit, e.data["saved_usd"].as_float()).label("saved_usd"),
        )
        .where(e.type.in_(("llm.response", "llm.cached")), e.ts >= since.timestamp())
        .group_by(model)
    )


MODEL_CALLS = run_events.c.type == sa.literal_column(f"'{MODEL_CALL}'")
"""A literal, not a bound value: the planner then proves the partial index applies (0016)."""


def _series(since: datetime, until: datetime, step_s: int, group_by: SeriesGroup) -> sa.Select[Any]:
    """``llm.response`` events summed by bucket (whole milliseconds since ``since``, divided
    by the step's: integer division, the same on SQLite and PostgreSQL) and group."""
    c, data = run_events.c, run_events.c.data
    start_ms = int(since.timestamp() * 1000)
    elapsed = sa.cast(c.ts * 1000, sa.BigInteger) - sa.literal(start_ms, sa.BigInteger)
    bucket = (elapsed // sa.literal(step_s * 1000, sa.BigInteger)).label("bucket")
    value = {"agent": c.agent, "tenant": c.tenant_id}.get(group_by, data["model"].as_string())
    return (
        sa.select(
            bucket,
            value.label("value"),
            sa.func.count().label("calls"),
            sa.func.sum(data["prompt_tokens"].as_integer()).label("prompt_tokens"),
            sa.func.sum(data["completion_tokens"].as_integer()).label("completion_tokens"),
            sa.func.sum(data["cost_usd"].as_float()).label("cost_usd"),
        )
        .where(MODEL_CALLS, c.ts >= since.timestamp(), c.ts < until.timestamp())
        .group_by(bucket, value)
    )


def _numbers(row: dict[str, Any]) -> dict[str, Any]:
    """Sums of nothing are NULL; costs are rounded as a run's are."""
    row = {k: (0 if v is None and k != "value" and k != "calls" else v) for k, v in row.items()}
    for money in ("cost_usd", "saved_usd"):  # a series has no savings column
        if money in row:
            row[money] = round(float(row[money]), 10)
    return row
