"""The embedded state store's operations: plain functions of a stdlib ``sqlite3`` connection.

Each one is a whole operation — one transaction — so the store can run it on the event loop or
on its thread alike. Expired keys are absent: reads skip them, writes to a key first drop it if
it has expired, and ``purge`` deletes them all.

Tables (temporary state: created on open, no migrations)::

    state_keys    key → kind ('value' | 'list'), value, length, expires_at (Unix seconds)
    state_items   (key, idx) → item; a list's items, idx 0..length-1 (lists are append-only)
    state_leases  name → token, owner (NULL once released), expires_at, keep_until (the token
                  counter's own expiry: LEASE_SEQUENCE_TTL_S after the last use)
    state_queue   (name, ticket) → expires_at: the live tickets waiting for a lease
    state_queue_seq  name → last ticket handed out, keep_until (QUEUE_SEQUENCE_TTL_S after)
    state_rates   key → tat (a rate's theoretical arrival time, ``base.gcra``), expires_at (= tat:
                  the rate is whole again then)
    state_slots   (name, holder) → expires_at: the slots in use (``Slots``)
    state_messages id (growing) → channel, message, origin (the publishing store), at: what was
                  published, for the other processes on the file (``sqlite_channels``); kept
                  MESSAGE_KEEP_S
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from shipyard.errors import StoreError
from shipyard.stores import _sqlite
from shipyard.stores._sqlite import transaction
from shipyard.stores.state import sqlite_meters
from shipyard.stores.state.base import (
    LEASE_SEQUENCE_TTL_S,
    QUEUE_SEQUENCE_TTL_S,
    Quota,
    Rate,
    gcra,
)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS state_keys (
        key TEXT PRIMARY KEY, kind TEXT NOT NULL, value BLOB,
        length INTEGER NOT NULL DEFAULT 0, expires_at REAL NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS state_keys_expires_at ON state_keys (expires_at)",
    """CREATE TABLE IF NOT EXISTS state_items (
        key TEXT NOT NULL, idx INTEGER NOT NULL, item BLOB NOT NULL, PRIMARY KEY (key, idx)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS state_leases (
        name TEXT PRIMARY KEY, token INTEGER NOT NULL, owner TEXT,
        expires_at REAL NOT NULL, keep_until REAL NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS state_queue (
        name TEXT NOT NULL, ticket INTEGER NOT NULL, expires_at REAL NOT NULL,
        PRIMARY KEY (name, ticket)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS state_queue_seq (
        name TEXT PRIMARY KEY, last INTEGER NOT NULL, keep_until REAL NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS state_rates (
        key TEXT PRIMARY KEY, tat REAL NOT NULL, expires_at REAL NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS state_slots (
        name TEXT NOT NULL, holder TEXT NOT NULL, expires_at REAL NOT NULL,
        PRIMARY KEY (name, holder)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS state_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL, message BLOB NOT NULL,
        origin TEXT NOT NULL, at REAL NOT NULL
    )""",
    *sqlite_meters.SCHEMA,
)
MESSAGE_KEEP_S = 60.0
"""How long a published message stays in ``state_messages``: far longer than any poll takes."""
MESSAGES_PER_READ = 1000

_UPSERT_KEY = (
    "INSERT INTO state_keys (key, kind, value, length, expires_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, value = excluded.value, "
    "length = excluded.length, expires_at = excluded.expires_at"
)


class _Key(NamedTuple):
    kind: str
    value: bytes | None
    length: int


def connect(path: str, *, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, tables created."""
    return _sqlite.connect(
        path, busy_timeout_ms=busy_timeout_ms, synchronous="NORMAL", schema=SCHEMA
    )


@contextmanager
def _read(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


def _wrong_kind(key: str, kind: str) -> StoreError:
    wanted = "value" if kind == "list" else "list"
    return StoreError(f"state key {key!r} holds a {kind}, not a {wanted}")


def _live(conn: sqlite3.Connection, key: str, now: float, *, drop: bool = False) -> _Key | None:
    """The key if it has not expired; an expired one is deleted first when ``drop``."""
    row = conn.execute(
        "SELECT kind, value, length, expires_at FROM state_keys WHERE key = ?", (key,)
    ).fetchone()
    if row is None:
        return None
    if row[3] <= now:
        if drop:
            _drop(conn, key)
        return None
    return _Key(row[0], row[1], row[2])


def _drop(conn: sqlite3.Connection, key: str) -> None:
    conn.execute("DELETE FROM state_items WHERE key = ?", (key,))
    conn.execute("DELETE FROM state_keys WHERE key = ?", (key,))


def _value(key: str, found: _Key | None) -> bytes | None:
    if found is None:
        return None
    if found.kind != "value":
        raise _wrong_kind(key, found.kind)
    return found.value


def _put_value(conn: sqlite3.Connection, key: str, value: bytes, expires_at: float) -> None:
    conn.execute(_UPSERT_KEY, (key, "value", value, 0, expires_at))


def _push(
    conn: sqlite3.Connection, key: str, items: Sequence[bytes], ttl_s: float, now: float
) -> int:
    found = _live(conn, key, now, drop=True)
    if found is not None and found.kind != "list":
        raise _wrong_kind(key, found.kind)
    start = found.length if found else 0
    if found is None and not items:
        return 0
    rows = [(key, start + i, item) for i, item in enumerate(items)]
    conn.executemany("INSERT INTO state_items (key, idx, item) VALUES (?, ?, ?)", rows)
    conn.execute(_UPSERT_KEY, (key, "list", None, start + len(items), now + ttl_s))
    return start + len(items)


# -- values -------------------------------------------------------------------------------------


def get(conn: sqlite3.Connection, key: str) -> bytes | None:
    return _value(key, _live(conn, key, time.time()))


def set_value(conn: sqlite3.Connection, key: str, value: bytes, ttl_s: float) -> None:
    now = time.time()
    with transaction(conn):
        row = conn.execute("SELECT kind FROM state_keys WHERE key = ?", (key,)).fetchone()
        if row is not None and row[0] == "list":
            conn.execute("DELETE FROM state_items WHERE key = ?", (key,))
        _put_value(conn, key, value, now + ttl_s)


def delete(conn: sqlite3.Connection, keys: Sequence[str]) -> int:
    now = time.time()
    with transaction(conn):
        existed = 0
        for key in dict.fromkeys(keys):
            existed += _live(conn, key, now) is not None
            _drop(conn, key)
    return existed


def expire(conn: sqlite3.Connection, key: str, ttl_s: float) -> bool:
    now = time.time()
    with transaction(conn):
        if _live(conn, key, now, drop=True) is None:
            return False
        conn.execute("UPDATE state_keys SET expires_at = ? WHERE key = ?", (now + ttl_s, key))
    return True


def ttl(conn: sqlite3.Connection, key: str) -> float | None:
    now = time.time()
    row = conn.execute("SELECT expires_at FROM state_keys WHERE key = ?", (key,)).fetchone()
    return None if row is None or row[0] <= now else float(row[0]) - now


# -- lists --------------------------------------------------------------------------------------


def append(conn: sqlite3.Connection, key: str, items: Sequence[bytes], ttl_s: float) -> int:
    with transaction(conn):
        return _push(conn, key, items, ttl_s, time.time())


_RANGE = (  # one statement (so one snapshot, and no BEGIN and COMMIT of its own)
    "SELECT k.kind, i.item FROM state_keys AS k LEFT JOIN state_items AS i ON i.key = k.key "
    "AND i.idx BETWEEN (CASE WHEN ?2 < 0 THEN max(k.length + ?2, 0) ELSE ?2 END) "
    "AND min(CASE WHEN ?3 < 0 THEN k.length + ?3 ELSE ?3 END, k.length - 1) "
    "WHERE k.key = ?1 AND k.expires_at > ?4 ORDER BY i.idx"
)


def range_(conn: sqlite3.Connection, key: str, start: int, end: int) -> list[bytes]:
    """The items from ``start`` to ``end`` (inclusive; negative: from the end), as LRANGE.
    A session turn reads its history so: one statement where a read transaction, the key's
    row and its items took four."""
    rows = conn.execute(_RANGE, (key, start, end, time.time())).fetchall()
    if not rows:
        return []
    if rows[0][0] != "list":
        raise _wrong_kind(key, rows[0][0])
    return [] if rows[0][1] is None else [row[1] for row in rows]


def length(conn: sqlite3.Connection, key: str) -> int:
    found = _live(conn, key, time.time())
    if found is None:
        return 0
    if found.kind != "list":
        raise _wrong_kind(key, found.kind)
    return found.length


# -- atomic -------------------------------------------------------------------------------------


def compare_and_set(
    conn: sqlite3.Connection, key: str, expected: bytes | None, new: bytes, ttl_s: float
) -> bool:
    now = time.time()
    with transaction(conn):
        if _value(key, _live(conn, key, now, drop=True)) != expected:
            return False
        _put_value(conn, key, new, now + ttl_s)
    return True


def append_if(
    conn: sqlite3.Connection,
    list_key: str,
    items: Sequence[bytes],
    guard_key: str,
    expected: bytes | None,
    new: bytes,
    ttl_s: float,
) -> bool:
    now = time.time()
    with transaction(conn):
        if _value(guard_key, _live(conn, guard_key, now, drop=True)) != expected:
            return False
        _push(conn, list_key, items, ttl_s, now)
        _put_value(conn, guard_key, new, now + ttl_s)
    return True


# -- leases -------------------------------------------------------------------------------------


_LEASE = "SELECT token, owner, expires_at, keep_until FROM state_leases WHERE name = ?"
_QUEUED_AND_LEASE = (  # one statement where a turn reads the queue, then the lease
    "SELECT EXISTS (SELECT 1 FROM state_queue WHERE name = ?1 AND expires_at > ?2), "
    "l.token, l.owner, l.expires_at, l.keep_until "
    "FROM (SELECT 1) LEFT JOIN state_leases AS l ON l.name = ?1"
)


def acquire_lease(
    conn: sqlite3.Connection, name: str, owner: str, ttl_s: float
) -> tuple[int, float] | None:
    """``(token, expires_at)``, or None if the lease is held or tickets wait for it."""
    now = time.time()
    with transaction(conn):
        queued, *lease = conn.execute(_QUEUED_AND_LEASE, (name, now)).fetchone()
        if queued:
            return None
        return _take_lease(conn, name, owner, ttl_s, now, lease if lease[0] is not None else None)


def _take_lease(
    conn: sqlite3.Connection,
    name: str,
    owner: str,
    ttl_s: float,
    now: float,
    row: Sequence[Any] | None,
) -> tuple[int, float] | None:
    """Take the lease whose row (``_LEASE``; None: it has none) is ``row``, unless it is held."""
    if row is not None and row[1] is not None and row[2] > now:
        return None
    token = (row[0] if row is not None and row[3] > now else 0) + 1
    conn.execute(
        "INSERT INTO state_leases (name, token, owner, expires_at, keep_until) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET token = excluded.token, "
        "owner = excluded.owner, expires_at = excluded.expires_at, "
        "keep_until = excluded.keep_until",
        (name, token, owner, now + ttl_s, now + LEASE_SEQUENCE_TTL_S),
    )
    return token, now + ttl_s


def renew_lease(
    conn: sqlite3.Connection, name: str, owner: str, token: int, ttl_s: float
) -> float | None:
    """The new ``expires_at``, or None if the lease was lost."""
    now = time.time()
    with transaction(conn):
        cursor = conn.execute(
            "UPDATE state_leases SET expires_at = ?, keep_until = ? "
            "WHERE name = ? AND token = ? AND owner = ? AND expires_at > ?",
            (now + ttl_s, now + LEASE_SEQUENCE_TTL_S, name, token, owner, now),
        )
    return now + ttl_s if cursor.rowcount == 1 else None


def release_lease(conn: sqlite3.Connection, name: str, owner: str, token: int) -> bool:
    """One statement, atomic on its own (autocommit): no BEGIN and COMMIT around it."""
    cursor = conn.execute(
        "UPDATE state_leases SET owner = NULL, expires_at = 0 "
        "WHERE name = ? AND token = ? AND owner = ? AND expires_at > ?",
        (name, token, owner, time.time()),
    )
    return cursor.rowcount == 1


def lease_is_current(conn: sqlite3.Connection, name: str, owner: str, token: int) -> bool:
    row = conn.execute(
        "SELECT 1 FROM state_leases WHERE name = ? AND token = ? AND owner = ? AND expires_at > ?",
        (name, token, owner, time.time()),
    ).fetchone()
    return row is not None


# -- lease queues -------------------------------------------------------------------------------

_PUT_TICKET = "INSERT OR REPLACE INTO state_queue (name, ticket, expires_at) VALUES (?, ?, ?)"


def join_queue(conn: sqlite3.Connection, name: str, ticket_ttl_s: float) -> int:
    now = time.time()
    with transaction(conn):
        row = conn.execute(
            "SELECT last, keep_until FROM state_queue_seq WHERE name = ?", (name,)
        ).fetchone()
        ticket = (row[0] if row is not None and row[1] > now else 0) + 1
        conn.execute(
            "INSERT OR REPLACE INTO state_queue_seq (name, last, keep_until) VALUES (?, ?, ?)",
            (name, ticket, now + QUEUE_SEQUENCE_TTL_S),
        )
        conn.execute(_PUT_TICKET, (name, ticket, now + ticket_ttl_s))
    return ticket


def acquire_lease_in_turn(
    conn: sqlite3.Connection, name: str, owner: str, ticket: int, ttl_s: float, ticket_ttl_s: float
) -> tuple[int, float] | None:
    """``(token, expires_at)`` if ``ticket`` heads the queue and the lease was free; else None,
    with the ticket refreshed (or put back in its place)."""
    now = time.time()
    with transaction(conn):
        conn.execute("DELETE FROM state_queue WHERE name = ? AND expires_at <= ?", (name, now))
        conn.execute(_PUT_TICKET, (name, ticket, now + ticket_ttl_s))
        head = conn.execute(
            "SELECT min(ticket) FROM state_queue WHERE name = ?", (name,)
        ).fetchone()[0]
        got = None
        if head == ticket:
            lease = conn.execute(_LEASE, (name,)).fetchone()
            got = _take_lease(conn, name, owner, ttl_s, now, lease)
        if got is not None:
            conn.execute("DELETE FROM state_queue WHERE name = ? AND ticket = ?", (name, ticket))
    return got


def leave_queue(conn: sqlite3.Connection, name: str, ticket: int) -> bool:
    now = time.time()
    with transaction(conn):
        cursor = conn.execute(
            "DELETE FROM state_queue WHERE name = ? AND ticket = ? AND expires_at > ?",
            (name, ticket, now),
        )
    return cursor.rowcount == 1


# -- rates and slots ----------------------------------------------------------------------------


def take(conn: sqlite3.Connection, rates: Sequence[Rate], cost: int, force: bool) -> Quota:
    """``Rates.take``: the rates' tats read and written in one transaction (a read alone for
    ``cost`` 0)."""
    now = time.time()
    if cost == 0 and not force:
        with _read(conn):
            return gcra(_tats(conn, rates), rates, cost, force, now)[0]
    with transaction(conn):
        quota, new = gcra(_tats(conn, rates), rates, cost, force, now)
        conn.executemany(
            "INSERT INTO state_rates (key, tat, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET tat = excluded.tat, expires_at = excluded.expires_at",
            [(rate.key, tat, tat) for rate, tat in zip(rates, new, strict=False)],
        )
    return quota


def _tats(conn: sqlite3.Connection, rates: Sequence[Rate]) -> list[float | None]:
    found = []
    for rate in rates:
        row = conn.execute("SELECT tat FROM state_rates WHERE key = ?", (rate.key,)).fetchone()
        found.append(None if row is None else float(row[0]))
    return found


def acquire_slot(conn: sqlite3.Connection, name: str, holder: str, limit: int, ttl_s: float) -> int:
    now = time.time()
    with transaction(conn):
        conn.execute("DELETE FROM state_slots WHERE name = ? AND expires_at <= ?", (name, now))
        held = conn.execute(
            "SELECT 1 FROM state_slots WHERE name = ? AND holder = ?", (name, holder)
        ).fetchone()
        used = conn.execute("SELECT count(*) FROM state_slots WHERE name = ?", (name,)).fetchone()
        in_use = int(used[0]) + (held is None)
        if held is None and in_use > limit:
            return 0
        conn.execute(
            "INSERT OR REPLACE INTO state_slots (name, holder, expires_at) VALUES (?, ?, ?)",
            (name, holder, now + ttl_s),
        )
    return in_use


def release_slot(conn: sqlite3.Connection, name: str, holder: str) -> bool:
    with transaction(conn):
        cursor = conn.execute(
            "DELETE FROM state_slots WHERE name = ? AND holder = ? AND expires_at > ?",
            (name, holder, time.time()),
        )
    return cursor.rowcount == 1


# -- housekeeping -------------------------------------------------------------------------------


def purge(conn: sqlite3.Connection) -> int:
    """Delete expired keys (with their items) and forgotten lease counters; keys deleted."""
    now = time.time()
    with transaction(conn):
        conn.execute(
            "DELETE FROM state_items WHERE key IN "
            "(SELECT key FROM state_keys WHERE kind = 'list' AND expires_at <= ?)",
            (now,),
        )
        deleted = conn.execute("DELETE FROM state_keys WHERE expires_at <= ?", (now,)).rowcount
        conn.execute("DELETE FROM state_leases WHERE keep_until <= ?", (now,))
        conn.execute("DELETE FROM state_queue WHERE expires_at <= ?", (now,))
        conn.execute("DELETE FROM state_queue_seq WHERE keep_until <= ?", (now,))
        conn.execute("DELETE FROM state_rates WHERE expires_at <= ?", (now,))
        conn.execute("DELETE FROM state_slots WHERE expires_at <= ?", (now,))
        conn.execute("DELETE FROM state_messages WHERE at <= ?", (now - MESSAGE_KEEP_S,))
        for statement in sqlite_meters.PURGE:
            conn.execute(statement, (now,))
    return deleted


# -- messages (pub/sub across processes) ---------------------------------------------------------


def publish(conn: sqlite3.Connection, channel: str, message: bytes, origin: str) -> int:
    """Record a published message; its id."""
    with transaction(conn):
        cursor = conn.execute(
            "INSERT INTO state_messages (channel, message, origin, at) VALUES (?, ?, ?, ?)",
            (channel, message, origin, time.time()),
        )
    return int(cursor.lastrowid or 0)


def last_message(conn: sqlite3.Connection) -> int:
    """The id of the newest message (0 if none): a subscriber from now on gets those after it."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'state_messages'").fetchone()
    return int(row[0]) if row else 0


def messages_after(conn: sqlite3.Connection, after: int) -> list[tuple[int, str, bytes, str]]:
    """``(id, channel, message, origin)`` of the messages after ``after``, oldest first."""
    rows = conn.execute(
        "SELECT id, channel, message, origin FROM state_messages WHERE id > ? ORDER BY id LIMIT ?",
        (after, MESSAGES_PER_READ),
    ).fetchall()
    return [(int(i), str(c), bytes(m), str(o)) for i, c, m, o in rows]
