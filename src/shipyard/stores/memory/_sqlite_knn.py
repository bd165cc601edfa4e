"""The SQLite memory store's vector index: a sqlite-vec ``vec0`` table beside ``memories``.

``memories_vec`` keeps each memory's vector partitioned by tenant (``partition key``: a search
reads only its tenant's vectors, stored together) with the agent, subject and expiry as
metadata columns, so that a k-nearest search filters by scope inside sqlite-vec instead of
reading every row of the tenant and computing each distance in SQL. Triggers keep it in step
with ``memories``; a store made before it existed is filled once, when the table is created.
Searches with metadata filters (JSON) keep the exact scan over ``memories``.
"""

from __future__ import annotations

import time
from typing import Any

from shipyard.stores.memory.base import MemoryScope

__all__ = ["NEVER", "knn", "vector_index"]

NEVER = 1e300
"""The expiry of a memory that never expires (a metadata column cannot be NULL)."""
_VALUES = "new.rowid, new.tenant_id, new.agent, new.subject, coalesce(new.expires_at, 1e300)"


def vector_index(conn: Any, dimensions: int) -> None:
    """Create the vector table and its triggers if missing (filled from ``memories`` then)."""
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'memories_vec'").fetchall()
    if exists:
        return
    conn.execute(
        "CREATE VIRTUAL TABLE memories_vec USING vec0(tenant_id text partition key, "
        f"agent text, subject text, expires_at float, embedding float[{dimensions}] "
        "distance_metric=cosine)"
    )
    insert = (
        "INSERT INTO memories_vec(rowid, tenant_id, agent, subject, expires_at, embedding) "
        f"VALUES ({_VALUES}, new.embedding)"
    )
    conn.execute(f"CREATE TRIGGER memories_vec_ai AFTER INSERT ON memories BEGIN {insert}; END")
    conn.execute(
        "CREATE TRIGGER memories_vec_ad AFTER DELETE ON memories BEGIN "
        "DELETE FROM memories_vec WHERE rowid = old.rowid; END"
    )
    conn.execute(
        "CREATE TRIGGER memories_vec_au AFTER UPDATE OF embedding, expires_at ON memories BEGIN "
        f"DELETE FROM memories_vec WHERE rowid = old.rowid; {insert}; END"
    )
    conn.execute(
        "INSERT INTO memories_vec(rowid, tenant_id, agent, subject, expires_at, embedding) "
        "SELECT rowid, tenant_id, agent, subject, coalesce(expires_at, 1e300), embedding "
        "FROM memories"
    )


def knn(scope: MemoryScope, query: bytes, k: int) -> tuple[str, tuple[Any, ...]] | None:
    """The k nearest live memories of the scope, ``(id, similarity)`` best first; None for a
    scope with metadata filters (the caller scans exactly)."""
    if scope.filters:
        return None
    clauses = ["v.embedding MATCH ?", "v.k = ?", "v.tenant_id = ?", "v.expires_at > ?"]
    values: list[Any] = [query, k, scope.tenant_id, time.time()]
    for column in ("agent", "subject"):
        value = getattr(scope, column)
        if value is not None:
            clauses.append(f"v.{column} = ?")
            values.append(value)
    sql = (
        "SELECT m.id, 1 - v.distance FROM memories_vec AS v JOIN memories AS m "
        f"ON m.rowid = v.rowid WHERE {' AND '.join(clauses)} ORDER BY v.distance, m.id"
    )
    return sql, tuple(values)
