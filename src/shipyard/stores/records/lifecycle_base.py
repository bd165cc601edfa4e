"""What the lifecycle needs of the record store (``LifecycleRecords``): rows by age, per tenant,
and rows by subject.

The subject of a run, a session or a task is its metadata's ``subject`` (a string of 1 to
``MAX_SUBJECT`` characters; anything else is no subject), kept in an indexed ``subject`` column
(``subject_of``, written with the row). A subject's runs are its own, its sessions' turns, its
tasks' attempts, and the runs those started (``parent_run_id``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from shipyard.stores.records.artifacts_base import ArtifactRecord

__all__ = ["MAX_SUBJECT", "LifecycleRecords", "subject_of"]

MAX_SUBJECT = 256


def subject_of(metadata: Mapping[str, Any]) -> str | None:
    """The subject ``metadata`` names, or None."""
    found = metadata.get("subject")
    if isinstance(found, str) and 1 <= len(found) <= MAX_SUBJECT:
        return found
    return None


class LifecycleRecords(Protocol):
    async def tenant_ids(self, *, after: str | None = None, limit: int = 1000) -> list[str]:
        """Every tenant's id (those with a key or a policy), in order, from after ``after``."""
        ...

    async def prune_runs(self, tenant_id: str, before: datetime) -> int:
        """Delete the tenant's runs created before ``before``, and their events."""
        ...

    async def prune_events(self, tenant_id: str, before: datetime) -> int:
        """Delete the tenant's run events emitted before ``before`` (their runs stay)."""
        ...

    async def prune_tasks(self, tenant_id: str, before: datetime) -> int:
        """Delete the tenant's finished tasks last changed before ``before``, with their moves
        and their webhook deliveries."""
        ...

    async def prune_sessions(self, tenant_id: str, before: datetime, *, limit: int) -> list[str]:
        """Delete up to ``limit`` of the tenant's sessions created before ``before``; their ids."""
        ...

    async def prune_webhooks_of(self, tenant_id: str, before: datetime) -> int:
        """Delete the tenant's delivered and failed webhooks settled before ``before``."""
        ...

    async def old_artifacts(
        self, tenant_id: str, before: datetime, *, limit: int
    ) -> list[ArtifactRecord]:
        """Up to ``limit`` of the tenant's artifacts created before ``before``, oldest first."""
        ...

    async def artifacts_of_runs(
        self, tenant_id: str, run_ids: Sequence[str]
    ) -> list[ArtifactRecord]:
        """The tenant's artifacts made by these runs."""
        ...

    async def subject_sessions(self, tenant_id: str, subject: str) -> list[str]:
        """The ids of the subject's sessions (deleted ones too)."""
        ...

    async def subject_runs(self, tenant_id: str, subject: str) -> list[str]:
        """The ids of the subject's runs (see the module's docstring)."""
        ...

    async def erase_subject_rows(self, tenant_id: str, subject: str) -> dict[str, int]:
        """Delete the subject's runs, their events and artifacts' rows, its tasks with their
        moves and webhooks, and its sessions, in one transaction; rows deleted per table."""
        ...
