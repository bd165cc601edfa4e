"""Rate limits and the cap on runs in flight, kept in the state store so every replica shares them.

Two seams use one ``Limiter``:

- the request middleware (``api/middleware.RateLimit``) calls ``admit_request`` for each API
  request: the tenant's and the key's request rates, taken together in one state-store round
  trip (none at all when neither is set), shared with the other requests on the same rates in
  that turn of the event loop (``take_batch.TakeBatcher``);
- its run hook (``LimitsHook``, first of the invoker's hooks) runs around every run: before,
  it refuses a run while the tenant's model tokens (or its key's: ``calling_key``, which the
  middleware sets for the request and the runs it starts) are spent, and takes one of the tenant's
  slots for runs in flight (top-level runs only: a child run or a delegated task runs inside
  its parent's slot, which would otherwise deadlock a cap of 1); after, it counts the tokens
  the run used — even past the limit: they were spent, and the next run waits until the debt
  is paid back — and gives the slot back. A slot expires by itself ``slot_ttl_s`` after it was
  taken (longer than any run may last), so a replica that crashed frees its slots.

Each limit is the tenant policy's (``limits`` section) or, where that is unset, the server's
default (``SHIPYARD_LIMIT_*``). Over a limit: ``RateLimited`` (429 ``rate_limited``) or
``TooManyRuns`` (429 ``too_many_runs``), with the numbers for the ``RateLimit-*`` headers.
Keys are hash-tagged by tenant (``{tenant}``), so on Redis Cluster one take stays on one node,
and name the limit, so a limit changed in the policy starts its count afresh.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, fields
from typing import Protocol

import structlog

from shipyard.agents.context import RunContext, RunResult
from shipyard.errors import RateLimited, StoreError, TooManyRuns
from shipyard.runtime.take_batch import TakeBatcher
from shipyard.runtime.tenants import TenantPolicies
from shipyard.stores.records.policy import Limits
from shipyard.stores.state.base import Quota, Rate, Rates, Slots

log = structlog.get_logger(__name__)

MINUTE_S = 60.0
DAY_S = 86400.0
SLOT_RETRY_S = 1.0
"""What ``Retry-After`` says when the runs in flight are at the cap: nobody knows when one ends."""
SLOT_MARGIN_S = 60.0

calling_key: ContextVar[str | None] = ContextVar("shipyard_calling_key", default=None)
"""The id of the API key whose request is being served (set by the request middleware; runs
the request starts inherit it): its runs' tokens count for the key too. None in a worker."""


class QuotaStore(Rates, Slots, Protocol):
    pass


@dataclass(frozen=True, slots=True)
class Effective:
    """One tenant's limits, the policy's over the server's defaults."""

    requests_per_minute: int | None = None
    key_requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    tokens_per_day: int | None = None
    key_tokens_per_minute: int | None = None
    max_concurrent_runs: int | None = None

    def over(self, policy: Limits) -> Effective:
        """These defaults under ``policy``'s own values."""
        values = {f.name: getattr(policy, f.name) for f in fields(self)}
        return Effective(**{k: v if v is not None else getattr(self, k) for k, v in values.items()})

    def token_rates(self, tenant_id: str, key_id: str | None) -> list[Rate]:
        rates = []
        if self.key_tokens_per_minute and key_id is not None:
            key = f"{{{tenant_id}}}:key:{key_id}:tokens:m"
            rates.append(_rate(key, self.key_tokens_per_minute, MINUTE_S))
        if self.tokens_per_minute:
            rates.append(_rate(f"{{{tenant_id}}}:tokens:m", self.tokens_per_minute, MINUTE_S))
        if self.tokens_per_day:
            rates.append(_rate(f"{{{tenant_id}}}:tokens:d", self.tokens_per_day, DAY_S))
        return rates


class Limiter:
    def __init__(
        self,
        store: QuotaStore,
        tenants: TenantPolicies,
        defaults: Effective,
        *,
        slot_ttl_s: float,
    ) -> None:
        """``slot_ttl_s``: how long a slot for a run in flight lives if nobody gives it back
        (longer than the longest run)."""
        self._store = store
        self._tenants = tenants
        self._defaults = defaults
        self._slot_ttl_s = slot_ttl_s
        self._merged: dict[str, tuple[Limits, Effective]] = {}
        self._requests = TakeBatcher(store)
        self.hook = LimitsHook(self)

    async def limits(self, tenant_id: str) -> Effective:
        """The tenant's limits (its policy is read through the tenants' short cache)."""
        policy = (await self._tenants.policy(tenant_id)).limits
        cached = self._merged.get(tenant_id)
        if cached is not None and cached[0] is policy:
            return cached[1]
        merged = self._defaults.over(policy)
        if len(self._merged) > 10_000:
            self._merged.clear()
        self._merged[tenant_id] = (policy, merged)
        return merged

    async def admit_request(self, tenant_id: str, key_id: str) -> Quota | None:
        """Count one request of ``key_id``; ``RateLimited`` over a limit; the quota for the
        headers, or None when neither the tenant nor its keys have a request limit."""
        limits = await self.limits(tenant_id)
        rates = []
        if limits.requests_per_minute:
            rates.append(_rate(f"{{{tenant_id}}}:requests", limits.requests_per_minute, MINUTE_S))
        if limits.key_requests_per_minute:
            key = f"{{{tenant_id}}}:key:{key_id}:requests"
            rates.append(_rate(key, limits.key_requests_per_minute, MINUTE_S))
        if not rates:
            return None
        quota = await self._requests.take(rates)
        if not quota.allowed:
            which = "key" if ":key:" in quota.key else "tenant"
            message = f"the {which}'s limit of {quota.limit} requests per minute is reached"
            raise _refused(message, quota, {"limit": "requests", "per": which})
        return quota

    async def start_run(self, ctx: RunContext) -> str | None:
        """Admit a run (token limits, then a slot); the slot's name to give back, or None."""
        limits = await self.limits(ctx.tenant_id)
        rates = limits.token_rates(ctx.tenant_id, calling_key.get())
        if rates:
            quota = await self._store.take(rates, 0)
            if not quota.allowed:
                per = "day" if ":tokens:d:" in quota.key else "minute"
                who = "key" if ":key:" in quota.key else "tenant"
                message = f"the {who}'s limit of {quota.limit} model tokens per {per} is spent"
                raise _refused(message, quota, {"limit": "tokens", "per": per, "of": who})
        cap = limits.max_concurrent_runs
        if not cap or ctx.request.parent_run_id is not None:
            return None
        name = f"{{{ctx.tenant_id}}}:runs"
        if not await self._store.acquire_slot(name, ctx.run_id, limit=cap, ttl_s=self._slot_ttl_s):
            raise TooManyRuns(
                f"the tenant's limit of {cap} runs in flight is reached",
                limit=cap,
                remaining=0,
                reset_s=SLOT_RETRY_S,
                retry_after_s=SLOT_RETRY_S,
                details={"limit": "runs_in_flight"},
            )
        return name

    async def end_run(self, ctx: RunContext, slot: str | None) -> None:
        """Count the run's model tokens (past the limit too) and give its slot back. A store
        that fails here is logged, not raised: the run itself is done, and a slot not given
        back expires by itself."""
        try:
            used = ctx.usage.prompt_tokens + ctx.usage.completion_tokens
            if used > 0:
                limits = await self.limits(ctx.tenant_id)
                rates = limits.token_rates(ctx.tenant_id, calling_key.get())
                if rates:
                    await self._store.take(rates, used, force=True)
        except StoreError as exc:
            log.warning("cannot count a run's tokens", run_id=ctx.run_id, error=exc.message)
        if slot is not None:
            try:
                await self._store.release_slot(slot, ctx.run_id)
            except StoreError as exc:
                log.warning("cannot give a run's slot back", run_id=ctx.run_id, error=exc.message)


class LimitsHook:
    """The run hook of a ``Limiter`` (``runtime.hooks.RunHook``)."""

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter
        self._slots: dict[str, str] = {}  # run id -> the slot it holds

    async def before(self, ctx: RunContext) -> None:
        slot = await self._limiter.start_run(ctx)
        if slot is not None:
            self._slots[ctx.run_id] = slot

    async def after(self, ctx: RunContext, ended: RunResult | BaseException) -> None:
        await self._limiter.end_run(ctx, self._slots.pop(ctx.run_id, None))


def _rate(key: str, limit: int, period_s: float) -> Rate:
    return Rate(f"{key}:{limit}", limit, period_s)


def _refused(message: str, quota: Quota, details: dict[str, str]) -> RateLimited:
    return RateLimited(
        message,
        limit=quota.limit,
        remaining=quota.remaining,
        reset_s=quota.reset_s,
        retry_after_s=quota.retry_after_s,
        details=details,
    )
