"""``Meters`` (budgets) on the embedded state store: each operation one SQLite transaction.

Tables (created with the store's others, ``sqlite_ops.SCHEMA``)::

    state_meters  key → spent, expires_at: what was spent under a meter
    state_holds   (key, holder) → amount, expires_at: live holds (an expired one is not counted)
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from shipyard.stores._sqlite import transaction
from shipyard.stores.state.meters import Level, Meter

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS state_meters (
        key TEXT PRIMARY KEY, spent INTEGER NOT NULL, expires_at REAL NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS state_holds (
        key TEXT NOT NULL, holder TEXT NOT NULL, amount INTEGER NOT NULL,
        expires_at REAL NOT NULL, PRIMARY KEY (key, holder)
    ) WITHOUT ROWID""",
)
PURGE = (
    "DELETE FROM state_meters WHERE expires_at <= ?",
    "DELETE FROM state_holds WHERE expires_at <= ?",
)


def hold(
    conn: sqlite3.Connection,
    meters: Sequence[Meter],
    holder: str,
    amounts: Sequence[int],
    ttl_s: float,
) -> int | None:
    now = time.time()
    with transaction(conn):
        for at, (meter, amount) in enumerate(zip(meters, amounts, strict=True)):
            level = _level(conn, meter.key, now)
            if level.spent + level.held + amount > meter.limit:
                return at
        for meter, amount in zip(meters, amounts, strict=True):
            conn.execute(
                "INSERT INTO state_holds (key, holder, amount, expires_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key, holder) DO UPDATE SET expires_at = excluded.expires_at, "
                "amount = excluded.amount + CASE WHEN state_holds.expires_at > ? "
                "THEN state_holds.amount ELSE 0 END",
                (meter.key, holder, amount, now + ttl_s, now),
            )
            _keep(conn, meter, 0, now + max(meter.keep_s, ttl_s))
    return None


def charge(
    conn: sqlite3.Connection, meters: Sequence[Meter], holder: str, amounts: Sequence[int]
) -> None:
    now = time.time()
    with transaction(conn):
        for meter, amount in zip(meters, amounts, strict=True):
            _keep(conn, meter, amount, now + meter.keep_s)
            conn.execute(
                "UPDATE state_holds SET amount = max(0, amount - ?) "
                "WHERE key = ? AND holder = ? AND expires_at > ?",
                (amount, meter.key, holder, now),
            )


def release(conn: sqlite3.Connection, keys: Sequence[str], holder: str) -> None:
    with transaction(conn):
        conn.executemany(
            "DELETE FROM state_holds WHERE key = ? AND holder = ?", [(k, holder) for k in keys]
        )


def levels(conn: sqlite3.Connection, keys: Sequence[str]) -> list[Level]:
    now = time.time()
    return [_level(conn, key, now) for key in keys]


def _level(conn: sqlite3.Connection, key: str, now: float) -> Level:
    spent = conn.execute(
        "SELECT spent FROM state_meters WHERE key = ? AND expires_at > ?", (key, now)
    ).fetchone()
    held = conn.execute(
        "SELECT coalesce(sum(amount), 0) FROM state_holds WHERE key = ? AND expires_at > ?",
        (key, now),
    ).fetchone()
    return Level(int(spent[0]) if spent else 0, int(held[0]))


def _keep(conn: sqlite3.Connection, meter: Meter, spent: int, until: float) -> None:
    """Add ``spent`` to the meter (an expired one starts again at 0), kept at least ``until``."""
    conn.execute(
        "INSERT INTO state_meters (key, spent, expires_at) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET "
        "spent = excluded.spent + CASE WHEN state_meters.expires_at > ? "
        "THEN state_meters.spent ELSE 0 END, "
        "expires_at = max(state_meters.expires_at, excluded.expires_at)",
        (meter.key, spent, until, time.time()),
    )
