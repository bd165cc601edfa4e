"""The audit log's records (``AuditRecords``), part of ``base.RecordStore``.

Rows are append-only and form one hash chain per writing process (``chain_id``, ``seq`` from
1, ``hash`` over the previous row's hash and this row); checkpoints sign a chain's head with an
HMAC. The chaining and signing are the writer's (``runtime.audit``); the store keeps and reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field


class AuditRecord(BaseModel):
    """One row of the audit log (``telemetry.audit.AuditEntry`` and its place in a chain)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Time-ordered: rows sort and page by it.")
    chain_id: str = Field(description="The writing process's chain.")
    seq: int = Field(description="The row's place in its chain, from 1.")
    at: datetime
    tenant_id: str | None = None
    key_id: str | None = None
    action: str
    resource: str
    outcome: str
    status: int | None = None
    scope: str | None = None
    client: str | None = None
    request_id: str | None = None
    trace_id: str | None = None
    detail: dict[str, Any] | None = None
    hash: str = Field(description="sha256 of the previous row's hash and this row.")


class AuditCheckpoint(BaseModel):
    """A chain's head (``row_seq``, ``row_hash``) signed with the audit key."""

    model_config = ConfigDict(frozen=True)

    chain_id: str
    seq: int
    row_seq: int
    row_hash: str
    at: datetime
    final: bool = Field(False, description="The writer closed its chain: no row may follow.")
    mac: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditQuery:
    """Which rows: every field set must match (``since`` inclusive, ``until`` exclusive)."""

    tenant_id: str | None = None
    key_id: str | None = None
    action: str | None = None
    action_prefix: str | None = None
    outcomes: tuple[str, ...] = ()
    scope: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class AuditGroup(BaseModel):
    """Rows counted by the values of some columns (``AuditRecords.group_audit``)."""

    values: dict[str, Any]
    count: int
    first_at: datetime
    last_at: datetime


class AuditPage(BaseModel):
    items: list[AuditRecord]
    next_cursor: str | None = None


AuditRow = Mapping[str, Any]
"""An ``AuditRecord`` as a plain mapping of its fields: what the writer stores (building a
model per row would cost the hot path more than the insert)."""


class AuditRecords(Protocol):
    async def append_audit(
        self, rows: Sequence[AuditRow], checkpoints: Sequence[AuditCheckpoint] = ()
    ) -> None:
        """Insert rows (every field of ``AuditRecord``) and checkpoints in one transaction;
        idempotent on retry."""
        ...

    async def list_audit(
        self, query: AuditQuery, *, limit: int = 50, cursor: str | None = None
    ) -> AuditPage:
        """Newest first."""
        ...

    async def group_audit(self, query: AuditQuery, by: Sequence[str]) -> list[AuditGroup]:
        """The matching rows counted per distinct value of the ``by`` columns, most first."""
        ...

    async def audit_chains(self) -> list[str]:
        """Every chain id that has rows or checkpoints."""
        ...

    async def audit_chain(
        self, chain_id: str, *, after_seq: int = 0, limit: int = 1000
    ) -> list[AuditRecord]:
        """A chain's rows in ``seq`` order, from after ``after_seq``."""
        ...

    async def audit_checkpoints(self, chain_id: str) -> list[AuditCheckpoint]:
        """A chain's checkpoints in ``seq`` order."""
        ...
