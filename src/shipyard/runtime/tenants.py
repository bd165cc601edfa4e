"""``TenantPolicies``: tenants' policies for the rest of the runtime, read through a short cache.

``policy(tenant)`` is what the seams read (limits, retention, budgets, guards, egress): it trusts
a policy it read for ``cache_s`` seconds (``SHIPYARD_TENANT_CACHE_S``), as ``KeyService`` trusts
keys; the callers that miss it at once (the requests and runs in flight when it expires) share
one read. A change made through this service is seen by this process at once, by others within
their ``cache_s``. A tenant without a record has ``DEFAULT_POLICY``.
"""

from __future__ import annotations

import asyncio
import functools
import time

from pydantic import ValidationError

from shipyard.errors import ConfigError, InvalidInput, TenantNotFound
from shipyard.guard.pipeline import RunGuard
from shipyard.guard.policy import GuardPolicy
from shipyard.guard.rules import EgressRules
from shipyard.stores.records.base import PolicyChange, TenantRecord, TenantRecords
from shipyard.stores.records.policy import DEFAULT_POLICY, TenantPolicy

_CACHE_MAX = 10_000


class TenantPolicies:
    def __init__(self, store: TenantRecords, *, cache_s: float = 5.0) -> None:
        self._store = store
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, TenantPolicy]] = {}  # tenant -> (expiry, policy)
        self._reading: dict[str, asyncio.Future[TenantPolicy]] = {}  # tenant -> its read

    async def policy(self, tenant_id: str) -> TenantPolicy:
        """The tenant's policy (the default one if it has none), at most ``cache_s`` old."""
        now = time.monotonic()
        cached = self._cache.get(tenant_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        if self._cache_s <= 0:
            return await self._read(tenant_id, now)
        reading = self._reading.get(tenant_id)
        if reading is None:  # the requests and runs that miss together share one read
            reading = self._reading[tenant_id] = asyncio.ensure_future(self._read(tenant_id, now))
            reading.add_done_callback(functools.partial(self._read_done, tenant_id))
        return await asyncio.shield(reading)

    async def _read(self, tenant_id: str, now: float) -> TenantPolicy:
        record = await self._store.get_tenant(tenant_id)
        policy = record.policy if record is not None else DEFAULT_POLICY
        if self._cache_s > 0 and self._reading.get(tenant_id) is asyncio.current_task():
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[tenant_id] = (now + self._cache_s, policy)
        return policy

    def _read_done(self, tenant_id: str, read: asyncio.Future[TenantPolicy]) -> None:
        if self._reading.get(tenant_id) is read:  # not replaced by a read after a change
            del self._reading[tenant_id]
        if not read.cancelled():
            read.exception()  # retrieved: its callers may all have been cancelled

    async def get(self, tenant_id: str) -> TenantRecord:
        """The tenant's record, read now (not cached); ``TenantNotFound`` if it has none."""
        record = await self._store.get_tenant(tenant_id)
        if record is None:
            raise TenantNotFound(f"no tenant {tenant_id!r}")
        return record

    async def put(
        self,
        tenant_id: str,
        policy: TenantPolicy,
        *,
        changed_by: str,
        expected_version: int | None = None,
    ) -> TenantRecord:
        """Store the tenant's next policy version (``PolicyConflict`` if ``expected_version`` is
        stale; ``InvalidInput`` for an ``egress.allow`` pattern the egress rules cannot read);
        this process sees it at once."""
        _check_egress(policy)
        _check_guards(policy)
        record = await self._store.put_tenant_policy(
            tenant_id, policy, expected_version=expected_version, changed_by=changed_by
        )
        self._cache.pop(tenant_id, None)
        self._reading.pop(tenant_id, None)  # a read from before the change is not cached
        return record

    async def changes(
        self, tenant_id: str, *, before_version: int | None = None, limit: int = 50
    ) -> list[PolicyChange]:
        """Who changed the tenant's policy to what, newest first."""
        return await self._store.list_policy_changes(
            tenant_id, before_version=before_version, limit=limit
        )


def _check_egress(policy: TenantPolicy) -> None:
    """The ``egress.allow`` patterns are the egress rules' hosts (``guard.rules``)."""
    if policy.egress.allow is not None:
        try:
            EgressRules(hosts=policy.egress.allow)
        except ConfigError as exc:
            raise InvalidInput(
                f"policy.egress.allow: {exc.message}", details={"field": "policy.egress.allow"}
            ) from None


def tenant_guards(policy: TenantPolicy) -> GuardPolicy | None:
    """The tenant's own guard rules (``guards.settings``: a ``GuardPolicy`` as JSON), or None."""
    settings = policy.guards.settings
    return GuardPolicy.model_validate(settings) if settings else None


def _check_guards(policy: TenantPolicy) -> None:
    """``guards.settings`` is a guard policy whose detectors exist."""
    try:
        guards = tenant_guards(policy)
        if guards is not None:
            RunGuard(guards)
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInput(
            f"policy.guards.settings: {errors}", details={"field": "policy.guards.settings"}
        ) from None
    except ConfigError as exc:
        raise InvalidInput(
            f"policy.guards.settings: {exc.message}", details={"field": "policy.guards.settings"}
        ) from None
