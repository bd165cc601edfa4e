"""``SqliteStateStore``: the embedded state store, one SQLite file (or memory).

Operations are the plain functions of ``sqlite_ops`` on the stdlib driver. Measured on two cores
(a 200-byte set + get): ~22 µs run on the event loop, ~65-145 µs through a thread hop, ~550 µs
through aiosqlite (a hop per statement). So an operation runs on the loop when it can — reads
never wait in WAL mode, and a write is tried with ``busy_timeout = 0``. When another process
holds the write lock, the operation goes to the store's one thread, on a second connection
that waits with the busy timeout; until that thread is idle again every later operation
follows it there, so operations keep their order and each connection has one user at a time.
(Known cost: the commit that crosses SQLite's WAL auto-checkpoint threshold, every ~4 MB
written, checkpoints on the loop.)

Expiry: an expired key is absent on read; expired rows are purged at most every
``purge_interval_s``, before a write (and on the first write after opening).

Pub/sub on a file reaches every process that shares it — a server and its workers, so a cancel
sent by the API stops a task on a worker (``sqlite_channels``: a message is a row, which each
subscribed process polls for every ``POLL_S``); in memory it stays in the process
(``local_channels``). Processes on several machines need Redis.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from shipyard.errors import ConfigError, StoreError
from shipyard.stores._sqlite import is_locked
from shipyard.stores.state import sqlite_meters as meter_ops
from shipyard.stores.state import sqlite_ops as ops
from shipyard.stores.state.base import Lease, Quota, Rate, check_items, check_take, ttl_ms
from shipyard.stores.state.local_channels import MAX_QUEUED, LocalChannels
from shipyard.stores.state.meters import Level, Meter, check_meters
from shipyard.stores.state.sqlite_channels import POLL_S, FileChannels

__all__ = ["SqliteStateStore"]

T = TypeVar("T")

BUSY_TIMEOUT_MS = 5_000
PURGE_INTERVAL_S = 60.0


class SqliteStateStore:
    """The ``StateStore`` on SQLite; ``path=None`` keeps everything in memory."""

    def __init__(
        self,
        path: str | None = None,
        *,
        purge_interval_s: float = PURGE_INTERVAL_S,
        max_queued: int = MAX_QUEUED,
        poll_s: float = POLL_S,
    ) -> None:
        """``poll_s``: how often a process with subscribers reads what other processes sharing
        the file published."""
        self._label = path or ":memory:"
        self._purge_interval_s = purge_interval_s
        self._next_purge = 0.0
        self._channels = LocalChannels(max_queued=max_queued)
        self._shared: FileChannels | None = None
        self._closed = False
        self._thread: ThreadPoolExecutor | None = None
        self._last: Future[Any] | None = None
        try:
            if path is None:
                self._conn = ops.connect(":memory:", busy_timeout_ms=0)
                self._thread_conn = self._conn
                return
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self._thread_conn = ops.connect(path, busy_timeout_ms=BUSY_TIMEOUT_MS)
            self._conn = ops.connect(path, busy_timeout_ms=BUSY_TIMEOUT_MS)
            self._conn.execute("PRAGMA busy_timeout = 0")
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"cannot open the state store {self._label!r}: {e}") from e
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="shipyard-state")
        self._shared = FileChannels(
            self._channels, read=self._call, write=self._write, poll_s=poll_s
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        purge_interval_s: float = PURGE_INTERVAL_S,
        max_queued: int = MAX_QUEUED,
    ) -> SqliteStateStore:
        """``sqlite:///relative.db``, ``sqlite:////absolute.db``, or ``sqlite://`` (memory)."""
        if not url.startswith("sqlite://"):
            raise ConfigError(f"unsupported state store URL {url!r} for SQLite: sqlite://")
        rest = url.removeprefix("sqlite://")
        if rest in ("", "/", "/:memory:"):
            path = None
        elif rest.startswith("/") and "?" not in rest:
            path = rest[1:]
        else:
            raise ConfigError(f"invalid SQLite state store URL {url!r}: use sqlite:///path.db")
        return cls(path, purge_interval_s=purge_interval_s, max_queued=max_queued)

    # -- lifecycle ------------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._call("ping", lambda conn: conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        """Close the connections and end every subscription; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._shared is not None:
            await self._shared.close()
        self._channels.close()
        self._conn.close()
        if self._thread is not None:
            await asyncio.wrap_future(self._thread.submit(self._thread_conn.close))
            self._thread.shutdown(wait=True)

    async def purge(self) -> int:
        """Delete expired keys now (writes also do it every ``purge_interval_s``)."""
        self._next_purge = time.monotonic() + self._purge_interval_s
        return await self._call("purge", ops.purge)

    # -- values ---------------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        return await self._call("get", ops.get, key)

    async def set(self, key: str, value: bytes, *, ttl_s: float) -> None:
        check_items([value])
        await self._write("set", ops.set_value, key, value, _seconds(ttl_s))

    async def delete(self, *keys: str) -> int:
        return await self._write("delete", ops.delete, keys) if keys else 0

    async def expire(self, key: str, ttl_s: float) -> bool:
        return await self._write("expire", ops.expire, key, _seconds(ttl_s))

    async def ttl(self, key: str) -> float | None:
        return await self._call("ttl", ops.ttl, key)

    # -- lists ----------------------------------------------------------------------------------

    async def append(self, key: str, *items: bytes, ttl_s: float) -> int:
        check_items(items)
        return await self._write("append", ops.append, key, items, _seconds(ttl_s))

    async def range(self, key: str, start: int = 0, end: int = -1) -> list[bytes]:
        return await self._call("range", ops.range_, key, start, end)

    async def length(self, key: str) -> int:
        return await self._call("length", ops.length, key)

    # -- atomic ---------------------------------------------------------------------------------

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes, *, ttl_s: float
    ) -> bool:
        check_items([new])
        return await self._write(
            "compare_and_set", ops.compare_and_set, key, expected, new, _seconds(ttl_s)
        )

    async def append_if(
        self,
        list_key: str,
        items: Sequence[bytes],
        *,
        guard_key: str,
        expected: bytes | None,
        new: bytes,
        ttl_s: float,
    ) -> bool:
        check_items([*items, new])
        args = (list_key, list(items), guard_key, expected, new, _seconds(ttl_s))
        return await self._write("append_if", ops.append_if, *args)

    # -- leases ---------------------------------------------------------------------------------

    async def acquire_lease(self, name: str, owner: str, *, ttl_s: float) -> Lease | None:
        got = await self._write("acquire_lease", ops.acquire_lease, name, owner, _seconds(ttl_s))
        return None if got is None else Lease(name, owner, token=got[0], expires_at=got[1])

    async def renew_lease(self, lease: Lease, *, ttl_s: float) -> Lease | None:
        args = (lease.name, lease.owner, lease.token, _seconds(ttl_s))
        expires_at = await self._write("renew_lease", ops.renew_lease, *args)
        return (
            None if expires_at is None else Lease(lease.name, lease.owner, lease.token, expires_at)
        )

    async def release_lease(self, lease: Lease) -> bool:
        args = (lease.name, lease.owner, lease.token)
        return await self._write("release_lease", ops.release_lease, *args)

    async def lease_is_current(self, lease: Lease) -> bool:
        args = (lease.name, lease.owner, lease.token)
        return await self._call("lease_is_current", ops.lease_is_current, *args)

    # -- lease queues ---------------------------------------------------------------------------

    async def join_queue(self, name: str, *, ticket_ttl_s: float) -> int:
        return await self._write("join_queue", ops.join_queue, name, _seconds(ticket_ttl_s))

    async def acquire_lease_in_turn(
        self, name: str, owner: str, ticket: int, *, ttl_s: float, ticket_ttl_s: float
    ) -> Lease | None:
        args = (name, owner, ticket, _seconds(ttl_s), _seconds(ticket_ttl_s))
        got = await self._write("acquire_lease_in_turn", ops.acquire_lease_in_turn, *args)
        return None if got is None else Lease(name, owner, token=got[0], expires_at=got[1])

    async def leave_queue(self, name: str, ticket: int) -> bool:
        return await self._write("leave_queue", ops.leave_queue, name, ticket)

    # -- rates and slots ------------------------------------------------------------------------

    async def take(self, rates: Sequence[Rate], cost: int = 1, *, force: bool = False) -> Quota:
        check_take(rates, cost)
        if cost == 0 and not force:
            return await self._call("take", ops.take, list(rates), cost, force)
        return await self._write("take", ops.take, list(rates), cost, force)

    async def acquire_slot(self, name: str, holder: str, *, limit: int, ttl_s: float) -> int:
        args = (name, holder, limit, _seconds(ttl_s))
        return await self._write("acquire_slot", ops.acquire_slot, *args)

    async def release_slot(self, name: str, holder: str) -> bool:
        return await self._write("release_slot", ops.release_slot, name, holder)

    # -- meters (budgets): sqlite_meters -------------------------------------------------------

    async def hold(
        self, meters: Sequence[Meter], holder: str, amounts: Sequence[int], *, ttl_s: float
    ) -> int | None:
        check_meters(meters, amounts)
        args = (meters, holder, amounts, _seconds(ttl_s))
        return await self._write("hold", meter_ops.hold, *args)

    async def charge(self, meters: Sequence[Meter], holder: str, amounts: Sequence[int]) -> None:
        check_meters(meters, amounts)
        await self._write("charge", meter_ops.charge, meters, holder, amounts)

    async def release(self, keys: Sequence[str], holder: str) -> None:
        await self._write("release", meter_ops.release, keys, holder)

    async def levels(self, keys: Sequence[str]) -> list[Level]:
        return await self._call("levels", meter_ops.levels, keys)

    # -- channels -------------------------------------------------------------------------------

    async def publish(self, channel: str, message: bytes) -> int:
        """Deliver to the subscribers of ``channel`` (of every process on the file); how many
        of this process's there were."""
        self._check_open("publish")
        check_items([message])
        if self._shared is not None:
            return await self._shared.publish(channel, message)
        return self._channels.publish(channel, message)

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self._subscribe(channel)

    @asynccontextmanager
    async def _subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        self._check_open("subscribe")
        channels = self._shared or self._channels
        async with channels.subscribe(channel) as messages:
            yield messages

    # -- private --------------------------------------------------------------------------------

    def _check_open(self, operation: str) -> None:
        if self._closed:
            raise StoreError("the state store is closed", details={"operation": operation})

    async def _call(self, operation: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await self._run(fn, *args)
        except (sqlite3.Error, OSError) as e:
            raise self._failed(operation, e) from e

    async def _write(self, operation: str, fn: Callable[..., T], *args: Any) -> T:
        """A write, preceded by a purge of expired rows when one is due."""
        try:
            if time.monotonic() >= self._next_purge:
                self._next_purge = time.monotonic() + self._purge_interval_s
                await self._run(ops.purge)
            return await self._run(fn, *args)
        except (sqlite3.Error, OSError) as e:
            raise self._failed(operation, e) from e

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """On the loop if the thread is idle and the write lock free, else on the thread."""
        if self._thread is None or self._last is None or self._last.done():
            try:
                return fn(self._conn, *args)
            except sqlite3.OperationalError as exc:
                if self._thread is None or not is_locked(exc):
                    raise
        self._last = self._thread.submit(fn, self._thread_conn, *args)
        return await asyncio.wrap_future(self._last)

    def _failed(self, operation: str, error: sqlite3.Error | OSError) -> StoreError:
        """A driver failure as the ``StoreError`` it leaves as (a plain ``except``, not a
        context manager: no generator and no awaits per call)."""
        reason = getattr(error, "sqlite_errorname", None) or type(error).__name__
        message = f"state store (sqlite {self._label}) {operation} failed: {reason}"
        return StoreError(message, details={"operation": operation})


def _seconds(ttl_s: float) -> float:
    return ttl_ms(ttl_s) / 1000
