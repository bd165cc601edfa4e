"""The audit log's tamper evidence: hash chains and signed checkpoints, and their check.

Each writing process keeps a chain of its own (``chain_id``; ``seq`` from 1), so processes never
wait on each other for a lock: a row's ``hash`` is sha256 over the previous row's hash and the
row's every field. A checkpoint signs a chain's head (its last row's ``seq`` and ``hash``) with
HMAC-SHA256 under the audit key. Someone who can write to the database but lacks the key can
edit, delete or insert rows and even recompute the hashes after them, but cannot sign a new
head: every change before a chain's last checkpoint is found. A chain's first rows are written
with its first checkpoint, and a closed chain ends with a ``final`` one.

What cannot be seen from the database alone: rows appended or removed after a live (or
crashed) chain's last checkpoint — the writer signs at least every ``SHIPYARD_AUDIT_CHECKPOINT_S``
— and a whole chain removed with its checkpoints; checkpoints are also logged
(``audit.checkpoint``, at most once a minute), so a copy of the log off the machine anchors them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from shipyard.stores.records.audit_base import (
    AuditCheckpoint,
    AuditRecord,
    AuditRecords,
    AuditRow,
)

GENESIS = ""
"""The "previous hash" of a chain's first row."""
VERIFY_PAGE = 5000
MAX_PROBLEMS = 20


def _time(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


HASHED = (
    "id", "chain_id", "seq", "at", "tenant_id", "key_id", "action", "resource", "outcome",
    "status", "scope", "client", "request_id", "trace_id", "detail",
)  # fmt: skip
"""Every field of a row but its own hash, in the order they are hashed."""
_DUMP = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def row_hash(previous: str, row: AuditRecord | AuditRow) -> str:
    """sha256 over the previous row's hash and every field of ``row`` but its own hash (a row
    as the writer makes it, a mapping, or as it is read back)."""
    fields = row if not isinstance(row, AuditRecord) else row.__dict__
    return values_hash(previous, [fields[name] for name in HASHED])


def values_hash(previous: str, values: list[Any]) -> str:
    """``row_hash`` of a row given as its values in ``HASHED`` order (left as they are)."""
    hashed = [*values]
    hashed[3] = _time(values[3])
    return hashlib.sha256(
        previous.encode() + b"\n" + orjson.dumps(hashed, option=_DUMP)
    ).hexdigest()


def checkpoint_mac(key: bytes, checkpoint: AuditCheckpoint) -> str:
    """HMAC-SHA256 under the audit key over everything the checkpoint says."""
    c = checkpoint
    body = orjson.dumps([c.chain_id, c.seq, c.row_seq, c.row_hash, _time(c.at), c.final])
    return hmac.new(key, body, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong at ``seq`` of a chain (``row_id``: the row there, when there is one)."""

    chain_id: str
    seq: int
    reason: str
    row_id: str | None = None

    def __str__(self) -> str:
        row = f" (row {self.row_id})" if self.row_id else ""
        return f"chain {self.chain_id} seq {self.seq}{row}: {self.reason}"


@dataclass(slots=True)
class ChainReport:
    chain_id: str
    rows: int = 0
    last_seq: int = 0
    signed_seq: int = 0
    """The last row a valid checkpoint signs (rows after it are the unsigned tail)."""
    final: bool = False
    problems: list[Problem] = field(default_factory=list)

    @property
    def unsigned(self) -> int:
        return max(self.last_seq - self.signed_seq, 0)

    def add(self, seq: int, reason: str, row_id: str | None = None) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(self.chain_id, seq, reason, row_id))

    @property
    def first_problem(self) -> Problem | None:
        return min(self.problems, key=lambda p: p.seq, default=None)


async def verify(store: AuditRecords, key: bytes) -> list[ChainReport]:
    """Check every chain, row by row, and every checkpoint."""
    return [await verify_chain(store, key, chain) for chain in await store.audit_chains()]


async def verify_chain(store: AuditRecords, key: bytes, chain_id: str) -> ChainReport:
    report = ChainReport(chain_id)
    checkpoints = await store.audit_checkpoints(chain_id)
    signs = _signed_heads(report, checkpoints, key)
    final = next((c for c in checkpoints if c.final and checkpoint_mac(key, c) == c.mac), None)
    report.final = final is not None
    previous, expected = GENESIS, 1
    async for row in _rows(store, chain_id):
        if row.seq != expected:
            gap = f"{expected}" if row.seq == expected + 1 else f"{expected}..{row.seq - 1}"
            report.add(expected, f"row(s) {gap} missing: deleted")
        if row_hash(previous, row) != row.hash:
            report.add(row.seq, "does not match its hash chain: altered, or inserted", row.id)
        if row.seq in signs and signs[row.seq] != row.hash:
            report.add(row.seq, "differs from what a signed checkpoint says: rewritten", row.id)
        if final is not None and row.seq > final.row_seq:
            report.add(row.seq, "follows the chain's final checkpoint: inserted", row.id)
        previous, expected = row.hash, row.seq + 1
        report.rows, report.last_seq = report.rows + 1, row.seq
    for seq in sorted(s for s in signs if s > report.last_seq):
        report.add(report.last_seq + 1, f"rows up to {seq}, signed by a checkpoint, are missing")
        break
    if report.rows and not signs:
        why = "none is valid (another SHIPYARD_AUDIT_KEY?)" if checkpoints else "forged chain"
        report.add(1, f"no signed checkpoint covers this chain: {why}")
    report.signed_seq = min(max(signs, default=0), report.last_seq)
    return report


def _signed_heads(
    report: ChainReport, checkpoints: list[AuditCheckpoint], key: bytes
) -> dict[int, str]:
    """The row hashes the valid checkpoints vouch for; bad ones are problems."""
    heads: dict[int, str] = {}
    for number, checkpoint in enumerate(checkpoints, start=1):
        if checkpoint.seq != number:
            report.add(checkpoint.row_seq, f"checkpoint {number} is missing: deleted")
        if checkpoint_mac(key, checkpoint) != checkpoint.mac:
            report.add(
                checkpoint.row_seq,
                f"checkpoint {checkpoint.seq}'s signature is wrong: forged or altered "
                "(or SHIPYARD_AUDIT_KEY is not the key it was written with)",
            )
            continue
        heads[checkpoint.row_seq] = checkpoint.row_hash
    return heads


async def _rows(store: AuditRecords, chain_id: str) -> AsyncIterator[AuditRecord]:
    """A chain's rows, page by page (a chain may hold millions)."""
    after = 0
    while True:
        rows = await store.audit_chain(chain_id, after_seq=after, limit=VERIFY_PAGE)
        for row in rows:
            yield row
        if len(rows) < VERIFY_PAGE:
            return
        after = rows[-1].seq
