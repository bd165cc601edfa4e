"""One lifecycle across the stores: the adapters that make the record, state and blob stores
``Prunable`` and ``Erasable`` (``stores.lifecycle``), and the ``Eraser`` behind
``DELETE /v1/subjects/{id}``.

A subject's erasure goes through the registered stores in order — artifacts (bytes, then
rows), session histories in the state store, memories, then the records (whose rows the first
ones read to find what is the subject's) — and answers with a receipt: what each store deleted.
It leaves an audit entry (``subjects.erase``) with the counts, never the data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import structlog
from pydantic import BaseModel, ConfigDict, Field

from shipyard.errors import StoreError
from shipyard.runtime.artifacts import tenant_prefix
from shipyard.runtime.sessions import history_keys
from shipyard.stores.blobs.base import ExpiringBlobs
from shipyard.stores.blobs.regions import RegionalBlobs
from shipyard.stores.lifecycle import Erasable
from shipyard.stores.records.artifacts_base import ArtifactRecord, ArtifactRecords
from shipyard.stores.records.lifecycle_base import LifecycleRecords
from shipyard.stores.state.base import StateStore
from shipyard.telemetry.audit import AuditEntry, AuditSink

__all__ = [
    "ArtifactLifecycle",
    "Eraser",
    "ErasureReceipt",
    "Itemized",
    "RecordErasure",
    "RecordPruning",
    "SessionLifecycle",
]

log = structlog.get_logger(__name__)

BATCH = 500
"""Sessions or artifacts one pruning step deletes at most."""

Prune = Callable[[str, datetime], Awaitable[int]]


async def _each_tenant(known: LifecycleRecords, tenant: str | None) -> list[str]:
    """``[tenant]``, or every tenant the records know (``tenant`` None: all of them)."""
    if tenant is not None:
        return [tenant]
    ids: list[str] = []
    while page := await known.tenant_ids(after=ids[-1] if ids else None):
        ids += page
    return ids


class RecordPruning:
    """One kind of record rows (runs, events, tasks, webhooks) as a ``Prunable``."""

    def __init__(self, known: LifecycleRecords, prune: Prune) -> None:
        self._known = known
        self._prune = prune

    async def prune(self, tenant: str | None, before: datetime) -> int:
        return sum([await self._prune(t, before) for t in await _each_tenant(self._known, tenant)])


class SessionLifecycle:
    """Sessions: their records and their conversation in the state store (meta, history).

    Pruning deletes the sessions created before the cutoff (rows and state); erasure deletes
    the state of the subject's sessions (their rows go with the records' erasure)."""

    def __init__(self, known: LifecycleRecords, state: StateStore) -> None:
        self._known = known
        self._state = state

    async def prune(self, tenant: str | None, before: datetime) -> int:
        pruned = 0
        for t in await _each_tenant(self._known, tenant):
            while ids := await self._known.prune_sessions(t, before, limit=BATCH):
                for session_id in ids:
                    await self._state.delete(*history_keys(session_id))
                pruned += len(ids)
        return pruned

    async def erase_subject(self, tenant: str, subject: str) -> int:
        """State keys deleted."""
        deleted = 0
        for session_id in await self._known.subject_sessions(tenant, subject):
            deleted += await self._state.delete(*history_keys(session_id))
        return deleted


class ArtifactLifecycle:
    """Artifacts: the bytes in their region's blob store, then the record; where the store
    expires objects itself (S3), also a lifecycle rule per tenant (``expire``).

    A blob whose region has no store here is not deleted, nor its record: pruning leaves both
    (logged) for a process that has the store; erasure fails (``StoreError``), since its
    receipt would otherwise say the subject's data is gone when it is not."""

    def __init__(
        self, known: LifecycleRecords, records: ArtifactRecords, blobs: RegionalBlobs
    ) -> None:
        self._known = known
        self._records = records
        self._blobs = blobs

    async def prune(self, tenant: str | None, before: datetime) -> int:
        pruned = 0
        for t in await _each_tenant(self._known, tenant):
            while batch := await self._known.old_artifacts(t, before, limit=BATCH):
                done = [await self._delete(record, strict=False) for record in batch]
                pruned += sum(done)
                if not any(done):  # only blobs of regions this process cannot reach are left
                    break
        return pruned

    async def expire(self, days: Mapping[str, int]) -> None:
        """``Expiring``: each region's store that expires objects itself (S3 lifecycle rules)
        gets one rule per tenant with a period — its key folder, its days."""
        prefixes = {f"{tenant_prefix(tenant)}/": n for tenant, n in days.items()}
        for region, store in self._blobs.stores.items():
            if isinstance(store, ExpiringBlobs) and await store.set_expiry(prefixes):
                log.info("artifact expiry rules set", region=region, tenants=len(prefixes))

    async def erase_subject(self, tenant: str, subject: str) -> int:
        run_ids = await self._known.subject_runs(tenant, subject)
        erased = 0
        for record in await self._known.artifacts_of_runs(tenant, run_ids):
            erased += await self._delete(record, strict=True)
        return erased

    async def _delete(self, record: ArtifactRecord, *, strict: bool) -> bool:
        store = self._blobs.stores.get(record.region)
        if store is None:
            log.warning("artifact kept: no store here for its region", region=record.region)
            if strict:
                raise StoreError(f"no blob store for region {record.region!r} in this process")
            return False
        await store.delete(record.blob_key)
        return await self._records.delete_artifact(record.tenant_id, record.id)


@runtime_checkable
class Itemized(Protocol):
    """An ``Erasable`` that also says what it deleted, per kind of item."""

    async def erase_itemized(self, tenant: str, subject: str) -> dict[str, int]: ...


class RecordErasure:
    """The subject's rows in the record store: runs and events, tasks with their moves and
    webhooks, sessions, the artifacts' rows left."""

    def __init__(self, known: LifecycleRecords) -> None:
        self._known = known

    async def erase_itemized(self, tenant: str, subject: str) -> dict[str, int]:
        return await self._known.erase_subject_rows(tenant, subject)

    async def erase_subject(self, tenant: str, subject: str) -> int:
        return sum((await self.erase_itemized(tenant, subject)).values())


class StoreReceipt(BaseModel):
    model_config = ConfigDict(frozen=True)

    store: str = Field(description="records, artifacts, session_history, memories...")
    deleted: int = Field(description="Items this store deleted.")
    items: dict[str, int] = Field(
        default_factory=dict, description="What they were, where the store says (records)."
    )


class ErasureReceipt(BaseModel):
    """What erasing a subject deleted, store by store."""

    model_config = ConfigDict(frozen=True)

    subject: str
    tenant_id: str
    erased_at: datetime
    stores: list[StoreReceipt]
    deleted: int = Field(description="Items deleted in every store together.")


async def _erase_in(name: str, store: Erasable, tenant: str, subject: str) -> StoreReceipt:
    if isinstance(store, Itemized):
        items = await store.erase_itemized(tenant, subject)
        return StoreReceipt(store=name, deleted=sum(items.values()), items=items)
    return StoreReceipt(store=name, deleted=await store.erase_subject(tenant, subject))


class Eraser:
    """Erases a subject from every registered store, in the order they were added."""

    def __init__(
        self,
        audit: AuditSink | None = None,
        *,
        flush: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``flush``: write what this process still holds for the records (the recorder's
        ``durable``) first, so a run answered a moment ago is erased too."""
        self._audit = audit
        self._flush = flush
        self._stores: list[tuple[str, Erasable]] = []

    def add(self, name: str, store: Erasable) -> None:
        self._stores.append((name, store))

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._stores]

    async def erase(
        self, tenant: str, subject: str, *, key_id: str | None = None
    ) -> ErasureReceipt:
        """Every store's share, in order; a store that fails stops the erasure (``StoreError``:
        asking again finishes it, each store's erasure being idempotent) and is audited."""
        receipts: list[StoreReceipt] = []
        try:
            if self._flush is not None:
                await self._flush()
            for name, store in self._stores:
                receipts.append(await _erase_in(name, store, tenant, subject))
        except Exception:
            self._record(tenant, subject, receipts, key_id, ok=False)
            raise
        self._record(tenant, subject, receipts, key_id, ok=True)
        return ErasureReceipt(
            subject=subject,
            tenant_id=tenant,
            erased_at=datetime.now(UTC),
            stores=receipts,
            deleted=sum(r.deleted for r in receipts),
        )

    def _record(
        self,
        tenant: str,
        subject: str,
        receipts: list[StoreReceipt],
        key_id: str | None,
        *,
        ok: bool,
    ) -> None:
        """The audit entry names the subject by its sha256 only: an auditor who knows the
        subject can check it was erased; the append-only log keeps no personal identifier."""
        if self._audit is None:
            return
        self._audit.record(
            AuditEntry(
                action="subjects.erase",
                resource=f"subject:sha256:{hashlib.sha256(subject.encode()).hexdigest()}",
                outcome="ok" if ok else "error",
                tenant_id=tenant,
                key_id=key_id,
                scope="admin",
                detail={r.store: r.deleted for r in receipts},
            )
        )
