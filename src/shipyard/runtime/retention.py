"""Deleting data past its retention: a worker's own rows (stopped workers, settled webhooks,
``Retention``) and each tenant's data in every store (``TenantRetention``, the tenants'
policies)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Literal

import structlog

from shipyard.runtime.tenants import TenantPolicies
from shipyard.stores.lifecycle import Expiring, Prunable
from shipyard.stores.records.lifecycle_base import LifecycleRecords
from shipyard.stores.records.policy import TenantPolicy
from shipyard.stores.state.base import StateStore

log = structlog.get_logger(__name__)

PRUNE_EVERY_S = 60.0
"""How often a worker process deletes the record rows past their retention, at most."""
TENANTS_PER_PAGE = 500
FIRST_SWEEP_S = 30.0
"""How long after a process starts it first sweeps the tenants' data (a short-lived command
does not)."""


class Retention:
    """Deletes rows past their retention through ``prune(cutoff)``: the first time it is asked,
    then at most every ``every_s``; a store that is down only delays it."""

    def __init__(
        self,
        rows: str,
        prune: Callable[[datetime], Awaitable[int]],
        *,
        keep_s: float,
        every_s: float,
    ) -> None:
        self._rows = rows
        self._prune = prune
        self._keep_s = keep_s
        self._every_s = every_s
        self._at: float | None = None

    async def maybe(self) -> None:
        now = time.monotonic()
        if self._at is not None and now - self._at < self._every_s:
            return
        self._at = now
        cutoff = datetime.now(UTC) - timedelta(seconds=self._keep_s)
        try:
            deleted = await self._prune(cutoff)
        except Exception as exc:
            log.warning("rows past their retention not pruned", rows=self._rows, error=str(exc))
            return
        if deleted:
            log.debug("rows past their retention pruned", rows=self._rows, deleted=deleted)


RetentionKind = Literal["runs", "events", "tasks", "sessions", "memories", "artifacts", "webhooks"]
"""What a tenant's retention has a period for: ``<kind>_days`` in its policy's ``retention``."""

SWEEP_LEASE = "lifecycle:sweep"
"""The state-store lease a sweep takes: one process of the deployment sweeps at a time, and at
most once every ``every_s`` (the lease is left to expire, not released)."""


def days_of(
    policy: TenantPolicy, kind: RetentionKind, defaults: Mapping[RetentionKind, int | None]
) -> int | None:
    """The tenant's period for ``kind``: its policy's, else the server's default, else None."""
    days: int | None = getattr(policy.retention, f"{kind}_days")
    return days or defaults.get(kind)


def session_ttl_cap(
    tenants: TenantPolicies, defaults: Mapping[RetentionKind, int | None]
) -> Callable[[str], Awaitable[float | None]]:
    """A tenant's longest session TTL: its ``sessions_days`` in seconds (None: no period), so
    a session's sliding TTL never outlasts the tenant's retention of sessions."""

    async def cap(tenant: str) -> float | None:
        days = days_of(await tenants.policy(tenant), "sessions", defaults)
        return days * 86400.0 if days is not None else None

    return cap


_Periods = dict[RetentionKind, dict[str, int]]
"""Each tenant's period of each kind a store expires itself (tenants without one left out)."""


class TenantRetention:
    """Deletes what each tenant's retention says is past, in every store registered with
    ``add`` — SQL rows, blobs, sessions' state, memories — at most every ``every_s``.

    A tenant's period for a kind is its policy's (``retention.<kind>_days``), else the server's
    default (``defaults``), else none: kept. Tenants are those the record store knows (every
    tenant with a key or a policy). A store that fails is logged and the sweep goes on.
    """

    def __init__(
        self,
        tenants: TenantPolicies,
        known: LifecycleRecords,
        defaults: Mapping[RetentionKind, int | None],
        *,
        every_s: float,
        state: StateStore | None = None,
    ) -> None:
        self._tenants = tenants
        self._known = known
        self._defaults = dict(defaults)
        self._every_s = every_s
        self._state = state
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        self._stores: list[tuple[RetentionKind, Prunable]] = []
        self._expiring: list[tuple[RetentionKind, Expiring]] = []
        self._retention = Retention(
            "tenant data", self.sweep_unless_taken, keep_s=0, every_s=every_s
        )
        self._task: asyncio.Task[None] | None = None

    def add(self, kind: RetentionKind, store: Prunable) -> None:
        """Enforce ``kind``'s periods in ``store`` (several stores may share a kind); a store
        that can expire items itself (``Expiring``) also gets every tenant's period each sweep."""
        self._stores.append((kind, store))
        if isinstance(store, Expiring):
            self._expiring.append((kind, store))

    def start(self) -> None:
        """Sweep in the background (``run``) until ``stop``."""
        if self._task is None:
            self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        """Sweep ``FIRST_SWEEP_S`` after the start (at most ``every_s``), then every
        ``every_s``, until cancelled."""
        await asyncio.sleep(min(self._every_s, FIRST_SWEEP_S))
        while True:
            await self._retention.maybe()
            await asyncio.sleep(self._every_s)

    async def sweep_unless_taken(self, now: datetime) -> int:
        """``sweep``, unless another process of the deployment swept less than ``every_s``
        ago (the state store's lease); items deleted."""
        if self._state is not None:
            lease = await self._state.acquire_lease(SWEEP_LEASE, self._owner, ttl_s=self._every_s)
            if lease is None:  # another process swept less than every_s ago
                return 0
        return sum((await self.sweep(now)).values())

    async def sweep(self, now: datetime | None = None) -> dict[str, int]:
        """One pass over every tenant and store; items deleted per kind."""
        now = now or datetime.now(UTC)
        deleted: dict[str, int] = dict.fromkeys((kind for kind, _ in self._stores), 0)
        periods: _Periods = {kind: {} for kind, _ in self._expiring}
        after: str | None = None
        while page := await self._known.tenant_ids(after=after, limit=TENANTS_PER_PAGE):
            for tenant in page:
                await self._sweep_tenant(tenant, now, deleted, periods)
            after = page[-1]
        await self._expire(periods)
        if any(deleted.values()):
            log.info("retention sweep", deleted={k: n for k, n in deleted.items() if n})
        return deleted

    async def _expire(self, periods: _Periods) -> None:
        """The stores that expire items themselves, told every tenant's period."""
        for kind, store in self._expiring:
            try:
                await store.expire(periods[kind])
            except Exception as exc:
                log.warning("retention rules failed", kind=kind, error=str(exc))

    async def _sweep_tenant(
        self, tenant: str, now: datetime, deleted: dict[str, int], periods: _Periods
    ) -> None:
        policy = await self._tenants.policy(tenant)
        for kind, found in periods.items():
            days = days_of(policy, kind, self._defaults)
            if days is not None:
                found[tenant] = days
        for kind, store in self._stores:
            days = days_of(policy, kind, self._defaults)
            if days is None:
                continue
            try:
                deleted[kind] += await store.prune(tenant, now - timedelta(days=days))
            except Exception as exc:
                log.warning("retention sweep failed", kind=kind, tenant_id=tenant, error=str(exc))
