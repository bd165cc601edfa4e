"""The lifecycle roles every store may play: data that ages out, and data tied to a subject.

A store that keeps per-tenant data past a request implements one or both, and the composition
root registers it with the sweeper (``runtime.retention.TenantRetention``) or the eraser
(``runtime.lifecycle.Eraser``) in one line — the records, state and blob stores through the
adapters of ``runtime.lifecycle``, the memory store as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol, runtime_checkable

__all__ = ["Erasable", "Expiring", "Prunable"]


@runtime_checkable
class Erasable(Protocol):
    """Data that can be tied to a subject (a user, a customer) and erased with it."""

    async def erase_subject(self, tenant: str, subject: str) -> int:
        """Delete everything of ``tenant`` tied to ``subject``; how many items went."""
        ...


@runtime_checkable
class Prunable(Protocol):
    """Data that ages out."""

    async def prune(self, tenant: str | None, before: datetime) -> int:
        """Delete ``tenant``'s items (every tenant's: ``None``) older than ``before``; how many
        items went."""
        ...


@runtime_checkable
class Expiring(Protocol):
    """A ``Prunable`` whose backend can also delete items by age itself (S3 lifecycle rules):
    the sweeper hands it every tenant's period once a sweep, and still prunes it (the rules
    are a backstop, and the records of expired items go at the sweep)."""

    async def expire(self, days: Mapping[str, int]) -> None:
        """Have the backend delete each tenant's items ``days[tenant]`` days after they were
        made; tenants not in ``days`` lose the rules set for them before."""
        ...
