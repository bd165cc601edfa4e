"""``SqliteMemoryStore``: the embedded memory store, one SQLite file with ``sqlite-vec``.

Python's own ``sqlite3`` may be built without extension loading, so this store uses ``apsw``,
which always can. Vectors are float32 blobs in the memories table, ranked by sqlite-vec's
``vec_distance_cosine`` over the rows the scope selects (exact, filter-correct: the tenant and
scope indexes bound the scan); full text is an FTS5 index kept in step by triggers. The one
connection is used from worker threads, one call at a time.
"""

from __future__ import annotations

import asyncio
import json
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

try:
    import apsw
except ImportError as exc:  # pragma: no cover - a core dependency
    raise ImportError("the SQLite memory store needs the `apsw` package") from exc

from shipyard.errors import ConfigError, StoreError
from shipyard.stores.memory._sqlite_knn import knn, vector_index
from shipyard.stores.memory.base import (
    Hits,
    Items,
    MemoryItem,
    MemoryScope,
    ScoredMemory,
    SearchOptions,
    check_embedder,
    check_embedding,
    query_words,
    rank,
)

T = TypeVar("T")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS memories (
        rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, tenant_id TEXT NOT NULL,
        agent TEXT NOT NULL, subject TEXT NOT NULL, text TEXT NOT NULL, metadata TEXT NOT NULL,
        embedding BLOB NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
        expires_at REAL)""",
    "CREATE INDEX IF NOT EXISTS memories_scope ON memories (tenant_id, agent, subject, id)",
    "CREATE INDEX IF NOT EXISTS memories_subject ON memories (tenant_id, subject)",
    "CREATE INDEX IF NOT EXISTS memories_created ON memories (created_at)",
    """CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5(
        text, content='memories', content_rowid='rowid')""",
    """CREATE TRIGGER IF NOT EXISTS memories_ai AFTER INSERT ON memories BEGIN
        INSERT INTO memories_fts(rowid, text) VALUES (new.rowid, new.text); END""",
    """CREATE TRIGGER IF NOT EXISTS memories_ad AFTER DELETE ON memories BEGIN
        INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
        END""",
    """CREATE TRIGGER IF NOT EXISTS memories_au AFTER UPDATE OF text ON memories BEGIN
        INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
        INSERT INTO memories_fts(rowid, text) VALUES (new.rowid, new.text); END""",
    "CREATE TABLE IF NOT EXISTS memory_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
_COLUMNS = "id, tenant_id, agent, subject, text, metadata, created_at, updated_at, expires_at"
_LIVE = "(m.expires_at IS NULL OR m.expires_at > ?)"


class SqliteMemoryStore:
    """Memories in one SQLite file (``sqlite:///path/memory.db``)."""

    def __init__(self, path: str, *, embedder: str, dimensions: int) -> None:
        self._path = path
        self._embedder = embedder
        self._dimensions = dimensions
        self._conn: Any = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, *, embedder: str, dimensions: int) -> SqliteMemoryStore:
        """``sqlite:///relative.db`` or ``sqlite:////absolute.db``."""
        rest = url.removeprefix("sqlite://")
        if not url.startswith("sqlite://") or not rest.startswith("/") or len(rest) < 2:
            raise ConfigError(f"invalid SQLite memory store URL {url!r}: use sqlite:///path.db")
        return cls(rest[1:], embedder=embedder, dimensions=dimensions)

    # -- plumbing --------------------------------------------------------------------------------

    async def _run(self, operation: str, fn: Callable[[Any], T]) -> T:
        async with self._lock:
            with _translate(operation):
                if self._conn is None:
                    self._conn = await asyncio.to_thread(self._open)
                return await asyncio.to_thread(fn, self._conn)

    def _open(self) -> Any:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = apsw.Connection(self._path)
        conn.enable_load_extension(True)
        import sqlite_vec  # type: ignore[import-untyped]  # here: it imports numpy, slow to load

        conn.load_extension(sqlite_vec.loadable_path())
        conn.enable_load_extension(False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL: no corruption, one fsync a checkpoint
        with conn:
            for statement in SCHEMA:
                conn.execute(statement)
            vector_index(conn, self._dimensions)
            rows = {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM memory_meta")}
            found = (rows["embedder"], int(rows["dimensions"])) if rows else None
            check_embedder(found, self._embedder, self._dimensions)
            if found is None:
                conn.execute(
                    "INSERT INTO memory_meta VALUES ('embedder', ?), ('dimensions', ?)",
                    (self._embedder, str(self._dimensions)),
                )
        return conn

    # -- writes ----------------------------------------------------------------------------------

    async def add(self, item: MemoryItem, embedding: Sequence[float]) -> None:
        await self.add_many([(item, embedding)])

    async def add_many(self, items: Sequence[tuple[MemoryItem, Sequence[float]]]) -> None:
        rows = []
        for item, embedding in items:
            check_embedding(embedding, self._dimensions)
            rows.append((
                item.id, item.tenant_id, item.agent, item.subject, item.text,
                json.dumps(dict(item.metadata)), _blob(embedding),
                item.created_at.timestamp(), item.updated_at.timestamp(), _ts(item.expires_at),
            ))  # fmt: skip

        def insert(conn: Any) -> None:
            with conn:
                conn.executemany(
                    f"INSERT INTO memories ({_COLUMNS.replace('metadata', 'metadata, embedding')})"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )

        await self._run("add", insert)

    async def update(self, item: MemoryItem, embedding: Sequence[float] | None = None) -> bool:
        sets = "text = ?, metadata = ?, updated_at = ?, expires_at = ?"
        values: list[Any] = [
            item.text, json.dumps(dict(item.metadata)), item.updated_at.timestamp(),
            _ts(item.expires_at),
        ]  # fmt: skip
        if embedding is not None:
            check_embedding(embedding, self._dimensions)
            sets += ", embedding = ?"
            values.append(_blob(embedding))

        def write(conn: Any) -> bool:
            with conn:
                conn.execute(
                    f"UPDATE memories AS m SET {sets} WHERE id = ? AND tenant_id = ? AND {_LIVE}",
                    (*values, item.id, item.tenant_id, time.time()),
                )
                return bool(conn.changes())

        return await self._run("update", write)

    async def delete(self, tenant_id: str, memory_id: str) -> bool:
        return await self._delete("delete", "id = ? AND tenant_id = ?", (memory_id, tenant_id)) > 0

    async def erase_subject(self, tenant: str, subject: str) -> int:
        return await self._delete("erase", "tenant_id = ? AND subject = ?", (tenant, subject))

    async def prune(self, tenant: str | None, before: datetime) -> int:
        where = "(created_at < ? OR (expires_at IS NOT NULL AND expires_at <= ?))"
        values: tuple[Any, ...] = (before.timestamp(), time.time())
        if tenant is not None:
            where, values = f"tenant_id = ? AND {where}", (tenant, *values)
        return await self._delete("prune", where, values)

    async def _delete(self, operation: str, where: str, values: tuple[Any, ...]) -> int:
        def delete(conn: Any) -> int:
            with conn:
                conn.execute(f"DELETE FROM memories WHERE {where}", values)
                return int(conn.changes())

        return await self._run(operation, delete)

    # -- reads -----------------------------------------------------------------------------------

    async def get(self, tenant_id: str, memory_id: str) -> MemoryItem | None:
        def read(conn: Any) -> MemoryItem | None:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM memories AS m WHERE id = ? AND tenant_id = ? AND {_LIVE}",
                (memory_id, tenant_id, time.time()),
            ).fetchall()
            return _item(rows[0]) if rows else None

        return await self._run("get", read)

    async def list(self, scope: MemoryScope, *, limit: int, before: str | None = None) -> Items:
        where, values = _scope(scope)
        if before is not None:
            where, values = f"{where} AND m.id < ?", [*values, before]

        def read(conn: Any) -> list[MemoryItem]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM memories AS m WHERE {where} ORDER BY m.id DESC LIMIT ?",
                (*values, limit),
            ).fetchall()
            return [_item(row) for row in rows]

        return await self._run("list", read)

    async def search(
        self, scope: MemoryScope, embedding: Sequence[float], text: str, options: SearchOptions
    ) -> Hits:
        check_embedding(embedding, self._dimensions)
        where, values = _scope(scope)
        query = _blob(embedding)
        words = query_words(text) if options.hybrid else []

        indexed = knn(scope, query, options.candidates)

        def read(conn: Any) -> list[ScoredMemory]:
            if indexed is not None:
                nearest = conn.execute(*indexed).fetchall()
            else:  # metadata filters: an exact scan of the scope
                nearest = conn.execute(
                    f"SELECT m.id, 1 - vec_distance_cosine(m.embedding, ?) AS similarity "
                    f"FROM memories AS m WHERE {where} ORDER BY similarity DESC, m.id LIMIT ?",
                    (query, *values, options.candidates),
                ).fetchall()
            matched: list[str] = []
            if words:
                match = " OR ".join(f'"{word}"' for word in words)
                matched = [
                    row[0]
                    for row in conn.execute(
                        f"SELECT m.id FROM memories_fts AS f JOIN memories AS m "
                        f"ON m.rowid = f.rowid WHERE memories_fts MATCH ? AND {where} "
                        f"ORDER BY bm25(memories_fts), m.id LIMIT ?",
                        (match, *values, options.candidates),
                    ).fetchall()
                ]
            ids = list({row[0] for row in nearest} | set(matched))
            found = conn.execute(
                f"SELECT {_COLUMNS} FROM memories WHERE id IN ({', '.join('?' * len(ids))})",
                ids,
            ).fetchall()
            items = {row[0]: _item(row) for row in found}
            hits = [(row[0], float(row[1])) for row in nearest]
            return rank(hits, matched, items, options, datetime.now(UTC))

        return await self._run("search", read)

    async def ping(self) -> None:
        await self._run("ping", lambda conn: conn.execute("SELECT 1").fetchall())

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                await asyncio.to_thread(conn.close)


def _scope(scope: MemoryScope) -> tuple[str, list[Any]]:
    """The WHERE clause (on ``m``) of a scope: its tenant, live memories, and the narrowing."""
    clauses, values = ["m.tenant_id = ?", _LIVE], [scope.tenant_id, time.time()]
    for column in ("agent", "subject"):
        value = getattr(scope, column)
        if value is not None:
            clauses.append(f"m.{column} = ?")
            values.append(value)
    for key, value in scope.filters.items():  # keys are checked: letters, digits, _ and -
        clauses.append(f"json_extract(m.metadata, '$.\"{key}\"') = ?")
        values.append(value)
    return " AND ".join(clauses), values


def _item(row: Sequence[Any]) -> MemoryItem:
    return MemoryItem(
        id=row[0],
        tenant_id=row[1],
        agent=row[2],
        subject=row[3],
        text=row[4],
        metadata=json.loads(row[5]),
        created_at=datetime.fromtimestamp(row[6], UTC),
        updated_at=datetime.fromtimestamp(row[7], UTC),
        expires_at=None if row[8] is None else datetime.fromtimestamp(row[8], UTC),
    )


def _blob(embedding: Sequence[float]) -> bytes:
    """A vector as sqlite-vec reads it: float32s in the machine's byte order."""
    return array("f", embedding).tobytes()


def _ts(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


@contextmanager
def _translate(operation: str) -> Iterator[None]:
    """apsw's errors as ``StoreError`` naming the operation."""
    try:
        yield
    except apsw.Error as exc:
        raise StoreError(
            f"memory store (sqlite) {operation} failed: {type(exc).__name__}: {exc}",
            details={"operation": f"memory {operation}"},
        ) from exc
