"""The lifecycle roles every store may play: data that ages out, and data tied to a subject.

A store that keeps per-tenant data past a request implements one or both, and the composition
root registers it with the sweeper (``runtime.retention.TenantRetention``) or the eraser
(``runtime.lifecycle.Eraser``) in one line — the records, state and blob stores through the
adapters of ``runtime.lifecycle``, the memory store as it is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

__all__ = ["Erasable", "Prunable"]


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
