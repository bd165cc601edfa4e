"""The data services: artifacts in the blob stores, long-term memory, and the lifecycle —
retention and erasure — across every store."""

from __future__ import annotations

from collections.abc import Mapping

from shipyard.agents.agent import Agent, AgentLike
from shipyard.compose.backends import MEMORY_STORES, Stores, open_backend, open_blob_stores
from shipyard.config import Settings
from shipyard.runtime.artifacts import ArtifactService
from shipyard.runtime.audit import AuditLog
from shipyard.runtime.hooks import RunHook
from shipyard.runtime.lifecycle import (
    ArtifactLifecycle,
    Eraser,
    RecordErasure,
    RecordPruning,
    SessionLifecycle,
)
from shipyard.runtime.memory import MemoryHook, MemoryService
from shipyard.runtime.retention import RetentionKind, TenantRetention
from shipyard.runtime.tenants import TenantPolicies
from shipyard.stores.memory.base import MemoryStore
from shipyard.stores.records.base import RecordStore


def build_artifacts(
    settings: Settings, records: RecordStore, tenants: TenantPolicies
) -> ArtifactService:
    return ArtifactService(
        records,
        open_blob_stores(settings),
        tenants,
        max_bytes=settings.max_artifact_bytes,
        presign_s=settings.blob_presign_s,
    )


def retention_defaults(settings: Settings) -> dict[RetentionKind, int | None]:
    """The server's retention periods (``SHIPYARD_RETENTION_*``), for tenants that set none."""
    return {
        "runs": settings.retention_runs_days,
        "events": settings.retention_events_days,
        "tasks": settings.retention_tasks_days,
        "sessions": settings.retention_sessions_days,
        "memories": settings.retention_memories_days,
        "artifacts": settings.retention_artifacts_days,
    }


def build_lifecycle(
    settings: Settings,
    stores: Stores,
    artifacts: ArtifactService,
    audit: AuditLog,
    memory: MemoryStore,
) -> tuple[TenantRetention | None, Eraser]:
    """The retention sweeper (``SHIPYARD_RETENTION_*``; none with ``SHIPYARD_RETENTION_SWEEP_S``
    0) and the subject eraser, over every store. A store with ``prune`` and ``erase_subject``
    (``stores.lifecycle``) joins with one line each: ``retention.add(kind, store)``, and
    ``eraser.add(name, store)`` before the records (which the others read)."""
    known = stores.records.lifecycle
    files = ArtifactLifecycle(known, stores.records, artifacts.blobs)
    sessions = SessionLifecycle(known, stores.state)
    eraser = Eraser(audit, flush=stores.recorder.durable)
    eraser.add("artifacts", files)
    eraser.add("session_history", sessions)
    eraser.add("memories", memory)
    eraser.add("records", RecordErasure(known))  # last: the others read its rows
    if settings.retention_sweep_s <= 0:
        return None, eraser
    defaults = retention_defaults(settings)
    retention = TenantRetention(
        stores.tenants, known, defaults, every_s=settings.retention_sweep_s, state=stores.state
    )
    retention.add("runs", RecordPruning(known, known.prune_runs))
    retention.add("events", RecordPruning(known, known.prune_events))
    retention.add("tasks", RecordPruning(known, known.prune_tasks))
    retention.add("webhooks", RecordPruning(known, known.prune_webhooks_of))
    retention.add("sessions", sessions)
    retention.add("artifacts", files)
    retention.add("memories", memory)
    return retention, eraser


def memory_hooks(
    memory: MemoryService, agents: Mapping[str, AgentLike], records: RecordStore
) -> list[RunHook]:
    """The memory hook, when an agent has memory: every hook is a step of every run."""
    uses = any(isinstance(a, Agent) and a.memory is not None for a in agents.values())
    return [MemoryHook(memory, agents, records)] if uses else []


def build_memory(settings: Settings) -> MemoryService:
    """Long-term memory: the store of ``SHIPYARD_MEMORY_URL`` for the vectors of
    ``SHIPYARD_EMBEDDER`` (both open lazily: nothing connects or loads weights until used)."""
    from shipyard.models.embedding import create_embedder

    embedder = create_embedder(settings.embedder)
    store: MemoryStore = open_backend(
        "memory store",
        MEMORY_STORES,
        settings.resolved_memory_url,
        embedder=embedder.name,
        dimensions=embedder.dimensions,
    )
    return MemoryService(store, embedder)
