"""``AuditLog``: the process's audit sink — buffers entries, chains them, writes them in batches.

``record`` only appends to a list (a request pays a few microseconds: the middleware hands a
tuple, ``RequestAudit``, and the row is made here, in the batch). A writer task wakes at
most every ``flush_s``, hashes what gathered into this process's chain (``audit_chain``), and
stores it with one ``append_audit`` through the record store's group commit, so many requests'
rows share one statement and one transaction (and share it with the runs' records when they
commit at the same moment). Every ``checkpoint_s`` at most — and with the chain's first rows,
and at close (``final``) — it signs the chain's head.

It also keeps API keys' last use: each key's newest use is written at most every
``key_used_every_s`` (with the rows), never a write per request. With ``enabled`` off
(``SHIPYARD_AUDIT=false``) only that is kept.

A store that does not answer is retried with backoff, the rows kept in order (at most
``max_pending``; past that, new rows are dropped and counted in a warning, and the gap shows in
``shipyard audit verify``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from shipyard.errors import StoreError, StoreRejected
from shipyard.runtime.audit_chain import GENESIS, HASHED, checkpoint_mac, values_hash
from shipyard.stores.records.audit_base import AuditCheckpoint, AuditRecords, AuditRow
from shipyard.telemetry.audit import AuditEntry, RequestAudit, outcome_of
from shipyard.telemetry.tracecontext import TraceParent

log = structlog.get_logger(__name__)

_BACKOFF = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
LOG_CHECKPOINT_EVERY_S = 60.0


class AuditStore(AuditRecords, Protocol):
    async def touch_api_keys(self, used: dict[str, datetime]) -> None: ...


def new_chain_id() -> str:
    """Names the writing process (host, pid) and this run of it."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{os.urandom(4).hex()}"


class AuditLog:
    def __init__(
        self,
        store: AuditStore,
        *,
        key: bytes,
        enabled: bool = True,
        flush_s: float = 0.05,
        checkpoint_s: float = 1.0,
        key_used_every_s: float = 60.0,
        max_pending: int = 100_000,
        chain_id: str | None = None,
    ) -> None:
        self.chain_id = chain_id or new_chain_id()
        self.enabled = enabled
        self._store, self._key = store, key
        self._flush_s, self._checkpoint_s = flush_s, checkpoint_s
        self._key_used_every_s, self._max_pending = key_used_every_s, max_pending
        self._entries: list[AuditEntry | RequestAudit] = []
        self._used: dict[str, float] = {}  # a key's last use, Unix time
        self._used_written: dict[str, float] = {}
        self._seq, self._head, self._checkpoints = 0, GENESIS, 0
        self._signed_seq, self._last_checkpoint = 0, 0.0
        self._last_logged = -LOG_CHECKPOINT_EVERY_S
        self._dropped = 0
        self._id_part = os.urandom(4).hex()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def record(self, entry: AuditEntry | RequestAudit) -> None:
        if entry.key_id is not None and entry.status != 401:
            at = entry.at
            self._used[entry.key_id] = at if isinstance(at, float) else at.timestamp()
        if self.enabled:
            if len(self._entries) < self._max_pending:
                self._entries.append(entry)
            else:
                self._dropped += 1
        self._wakeup.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._writer(), name="shipyard-audit")

    async def flush(self, *, final: bool = False) -> None:
        """Write everything recorded so far (``final``: and close the chain)."""
        async with self._lock:
            await self._write(final=final)

    async def close(self) -> None:
        """Stop the writer; write what is left and the chain's final checkpoint."""
        if self._task is not None:
            async with self._lock:  # never in the middle of a write: its rows would be lost
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await asyncio.wait_for(self.flush(final=True), timeout=10)
        except (StoreError, TimeoutError) as exc:
            log.error("audit rows not written at close", error=str(exc), rows=len(self._entries))

    async def _writer(self) -> None:
        while True:
            timeout = self._checkpoint_s if self._signed_seq < self._seq else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()
            self._wakeup.clear()
            await asyncio.sleep(self._flush_s)  # let more gather: one batch for many requests
            try:
                await self.flush()
            except Exception:  # never let the writer die; the rows stay for the next try
                log.exception("audit write failed")

    async def _write(self, *, final: bool) -> None:
        entries, self._entries = self._entries, []
        rows = [self._chained(entry) for entry in entries]
        checkpoint = self._checkpoint(final=final)
        used = self._due_key_uses(final=final)
        self._report_dropped()
        if rows or checkpoint or used:
            await self._store_until_done(rows, checkpoint, used)
        if checkpoint is not None:
            self._signed_seq = checkpoint.row_seq
            self._log_checkpoint(checkpoint)

    def _log_checkpoint(self, checkpoint: AuditCheckpoint) -> None:
        """A copy of the chain's signed head in the process log, an anchor outside the database
        (at most every ``LOG_CHECKPOINT_EVERY_S``, and the final one)."""
        now = time.monotonic()
        if checkpoint.final or now - self._last_logged >= LOG_CHECKPOINT_EVERY_S:
            self._last_logged = now
            log.info("audit.checkpoint", **checkpoint.model_dump(mode="json"))

    def _chained(self, entry: AuditEntry | RequestAudit) -> AuditRow:
        """The entry as the chain's next row. Its id: the millisecond, then this chain's random
        part and its place in it (unique without a random draw per row)."""
        self._seq += 1
        values = _request_values(entry) if isinstance(entry, RequestAudit) else _entry_values(entry)
        millis = int(values[3].timestamp() * 1000)
        values[:3] = f"aud_{millis:012x}{self._id_part}{self._seq:010x}", self.chain_id, self._seq
        row = dict(zip(HASHED, values, strict=True))
        row["hash"] = self._head = values_hash(self._head, values)
        return row

    def _checkpoint(self, *, final: bool) -> AuditCheckpoint | None:
        """Sign the head when due: the chain's first rows, every ``checkpoint_s``, the close."""
        now = time.monotonic()
        due = self._signed_seq == 0 or now - self._last_checkpoint >= self._checkpoint_s
        if self._seq == 0 or (self._signed_seq == self._seq and not final) or not (due or final):
            return None
        self._checkpoints += 1
        self._last_checkpoint = now
        unsigned = AuditCheckpoint.model_construct(
            chain_id=self.chain_id,
            seq=self._checkpoints,
            row_seq=self._seq,
            row_hash=self._head,
            at=datetime.now(UTC),
            final=final,
            mac="",
        )
        return unsigned.model_copy(update={"mac": checkpoint_mac(self._key, unsigned)})

    def _due_key_uses(self, *, final: bool) -> dict[str, datetime]:
        now = time.monotonic()
        due = {
            key_id: datetime.fromtimestamp(at, UTC)
            for key_id, at in self._used.items()
            if final or now - self._used_written.get(key_id, -1e9) >= self._key_used_every_s
        }
        for key_id in due:
            del self._used[key_id]
            self._used_written[key_id] = now
        return due

    def _report_dropped(self) -> None:
        if self._dropped:
            log.warning("audit rows dropped: the store is behind", dropped=self._dropped)
            self._dropped = 0

    async def _store_until_done(
        self,
        rows: list[AuditRow],
        checkpoint: AuditCheckpoint | None,
        used: dict[str, datetime],
    ) -> None:
        """Rows, checkpoint and key uses together (one group commit); retried while the store
        is unavailable. Rows the store refuses are dropped and logged (the gap shows)."""
        for attempt, delay in enumerate(itertools.chain(_BACKOFF, itertools.repeat(_BACKOFF[-1]))):
            try:
                appended = self._store.append_audit(rows, [checkpoint] if checkpoint else [])
                if used:  # one group commit for both; alone, no tasks for gather to make
                    await asyncio.gather(appended, self._store.touch_api_keys(used))
                else:
                    await appended
                return
            except StoreRejected:
                log.exception("audit rows refused by the store", rows=len(rows))
                return
            except StoreError as exc:
                log.warning("audit write failed, retrying", attempt=attempt + 1, error=str(exc))
                await asyncio.sleep(delay)


def _entry_values(entry: AuditEntry) -> list[Any]:
    """An entry's fields in ``HASHED`` order (the first three, the row's place, left empty)."""
    e = entry
    detail = dict(e.detail) if e.detail is not None else None
    return [
        None, None, None, e.at, e.tenant_id, e.key_id, e.action, e.resource, e.outcome,
        e.status, e.scope, e.client, e.request_id, e.trace_id, detail,
    ]  # fmt: skip


def _request_values(r: RequestAudit) -> list[Any]:
    """A request's fields in ``HASHED`` order (the first three left empty), as
    ``api.audit.entry`` made them before rows were made in the batch."""
    parent = TraceParent.parse(r.traceparent.decode("latin-1")) if r.traceparent else None
    return [
        None, None, None, datetime.fromtimestamp(r.at, UTC), r.tenant_id, r.key_id, r.action,
        r.resource, outcome_of(r.status), r.status, r.scope, r.client, r.request_id,
        parent.trace_id if parent else None, None,
    ]  # fmt: skip
