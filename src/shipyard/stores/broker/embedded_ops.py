"""The embedded broker's operations: plain functions of a stdlib ``sqlite3`` connection.

Each function is one short transaction. The table (the broker's own storage: created on open,
no migrations, so it may share a file with the records without Alembic knowing it)::

    broker_messages  id (grows, never reused) → queue, task_id, tenant_id, agent, body, headers
                     (JSON), priority, attempts (the message's attempt number), available_at
                     (Unix seconds; later for a retry), state ('queued' | 'leased' | 'dead'),
                     deliveries (times leased since published or retried: the lease's token),
                     lease_expires_at, dead_reason, created_at

A lease is ``(id, deliveries)``: settling checks both and that the row is still leased, so a
consumer whose lease expired and was taken by another cannot settle the other's delivery.
An expired lease goes back to ``queued`` at the next claim on its queue.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from shipyard.stores import _sqlite
from shipyard.stores._sqlite import transaction
from shipyard.stores.broker.base import TaskMessage

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS broker_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        task_id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        agent TEXT NOT NULL,
        body BLOB NOT NULL,
        headers TEXT NOT NULL,
        priority INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        available_at REAL NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'leased', 'dead')),
        deliveries INTEGER NOT NULL DEFAULT 0,
        lease_expires_at REAL,
        dead_reason TEXT,
        created_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS broker_messages_next "
    "ON broker_messages (queue, state, priority DESC, id)",
)

_COLUMNS = "id, deliveries, task_id, tenant_id, agent, body, headers, priority, attempts"


class Claimed(NamedTuple):
    """A message leased to a consumer: ``(id, token)`` is its lease."""

    id: int
    token: int
    message: TaskMessage


class Claim(NamedTuple):
    messages: list[Claimed]
    next_due: float | None
    """When nothing was claimable: the Unix time the next delayed message or lease falls due."""


def connect(path: str, *, busy_timeout_ms: int) -> sqlite3.Connection:
    """Autocommit (transactions are explicit), WAL, every commit synced: a publish that returned
    survives a crash of the process and of the machine."""
    return _sqlite.connect(path, busy_timeout_ms=busy_timeout_ms, synchronous="FULL", schema=SCHEMA)


def insert(conn: sqlite3.Connection, messages: Sequence[tuple[str, TaskMessage]]) -> None:
    """``(queue, message)`` pairs, in one transaction."""
    now = time.time()
    with transaction(conn):
        conn.executemany(
            "INSERT INTO broker_messages (queue, task_id, tenant_id, agent, body, headers, "
            "priority, attempts, available_at, state, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
            [
                (
                    queue,
                    message.task_id,
                    message.tenant_id,
                    message.agent,
                    message.body,
                    json.dumps(dict(message.headers)),
                    message.priority,
                    message.attempt,
                    now,
                    now,
                )
                for queue, message in messages
            ],
        )


def claim(conn: sqlite3.Connection, queue: str, limit: int, lease_s: float) -> Claim:
    """Lease up to ``limit`` available messages of ``queue``, highest priority then oldest first
    (expired leases count as available)."""
    now = time.time()
    with transaction(conn):
        conn.execute(
            "UPDATE broker_messages SET state = 'queued', lease_expires_at = NULL "
            "WHERE queue = ? AND state = 'leased' AND lease_expires_at <= ?",
            (queue, now),
        )
        rows = conn.execute(
            "UPDATE broker_messages SET state = 'leased', deliveries = deliveries + 1, "
            "lease_expires_at = ? WHERE id IN (SELECT id FROM broker_messages "
            "WHERE queue = ? AND state = 'queued' AND available_at <= ? "
            f"ORDER BY priority DESC, id LIMIT ?) RETURNING {_COLUMNS}",
            (now + lease_s, queue, now, limit),
        ).fetchall()
        next_due = None
        if not rows:
            next_due = conn.execute(
                "SELECT min(CASE state WHEN 'queued' THEN available_at "
                "ELSE lease_expires_at END) FROM broker_messages "
                "WHERE queue = ? AND state IN ('queued', 'leased')",
                (queue,),
            ).fetchone()[0]
        claimed = _decoded(conn, rows)
    claimed.sort(key=lambda c: (-c.message.priority, c.id))  # RETURNING promises no order
    return Claim(claimed, next_due)


def _decoded(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> list[Claimed]:
    """The claimed rows as messages; a row that is not a message (written by something else,
    or damaged) goes to the dead letters at once, in the claim's transaction."""
    claimed = []
    for row in rows:
        try:
            claimed.append(Claimed(row[0], row[1], _message(row[2:])))
        except (ValueError, TypeError):
            conn.execute(
                "UPDATE broker_messages SET state = 'dead', lease_expires_at = NULL, "
                "dead_reason = 'undecodable' WHERE id = ?",
                (row[0],),
            )
    return claimed


def ack(conn: sqlite3.Connection, id_: int, token: int) -> bool:
    with transaction(conn):
        cursor = conn.execute(
            "DELETE FROM broker_messages WHERE id = ? AND deliveries = ? AND state = 'leased'",
            (id_, token),
        )
    return cursor.rowcount == 1


def requeue(conn: sqlite3.Connection, id_: int, token: int) -> bool:
    """Back to the queue at its old place, for a delivery flagged ``redelivered``."""
    return release(conn, [(id_, token)]) == 1


def release(conn: sqlite3.Connection, leases: Sequence[tuple[int, int]]) -> int:
    """Hand leased messages back (a consumer leaving); how many were still leased."""
    with transaction(conn):
        cursor = conn.executemany(
            "UPDATE broker_messages SET state = 'queued', lease_expires_at = NULL "
            "WHERE id = ? AND deliveries = ? AND state = 'leased'",
            leases,
        )
    return cursor.rowcount


def retry(conn: sqlite3.Connection, id_: int, token: int, delay_s: float) -> bool:
    with transaction(conn):
        cursor = conn.execute(
            "UPDATE broker_messages SET state = 'queued', lease_expires_at = NULL, "
            "deliveries = 0, attempts = attempts + 1, available_at = ? "
            "WHERE id = ? AND deliveries = ? AND state = 'leased'",
            (time.time() + delay_s, id_, token),
        )
    return cursor.rowcount == 1


def dead(conn: sqlite3.Connection, id_: int, token: int, reason: str) -> bool:
    with transaction(conn):
        cursor = conn.execute(
            "UPDATE broker_messages SET state = 'dead', lease_expires_at = NULL, "
            "dead_reason = ? WHERE id = ? AND deliveries = ? AND state = 'leased'",
            (reason, id_, token),
        )
    return cursor.rowcount == 1


def renew(conn: sqlite3.Connection, leases: Sequence[tuple[int, int]], lease_s: float) -> None:
    until = time.time() + lease_s
    with transaction(conn):
        conn.executemany(
            "UPDATE broker_messages SET lease_expires_at = ? "
            "WHERE id = ? AND deliveries = ? AND state = 'leased'",
            [(until, id_, token) for id_, token in leases],
        )


def depth(conn: sqlite3.Connection, queue: str) -> int:
    now = time.time()
    row = conn.execute(
        "SELECT count(*) FROM broker_messages WHERE queue = ? AND ("
        "(state = 'queued' AND available_at <= ?) OR (state = 'leased' AND lease_expires_at <= ?))",
        (queue, now, now),
    ).fetchone()
    return int(row[0])


def dead_letters(conn: sqlite3.Connection, queue: str, limit: int) -> list[tuple[TaskMessage, str]]:
    rows = conn.execute(
        f"SELECT {_COLUMNS}, dead_reason FROM broker_messages "
        "WHERE queue = ? AND state = 'dead' ORDER BY id LIMIT ?",
        (queue, limit),
    ).fetchall()
    letters = []
    for row in rows:
        with contextlib.suppress(ValueError, TypeError):  # one that is not a message: skipped
            letters.append((_message(row[2:9]), row[9]))
    return letters


def _message(row: Sequence[Any]) -> TaskMessage:
    task_id, tenant_id, agent, body, headers, priority, attempts = row
    return TaskMessage(
        task_id=task_id,
        tenant_id=tenant_id,
        agent=agent,
        body=bytes(body),
        priority=priority,
        attempt=attempts,
        headers=json.loads(headers),
    )
