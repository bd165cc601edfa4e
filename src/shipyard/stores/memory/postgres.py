"""``PostgresMemoryStore``: memories in PostgreSQL with ``pgvector`` (any server that has it).

One table, ``shipyard_memories``: the vector column with an HNSW index (cosine), a generated
``tsvector`` (the ``simple`` configuration: no stemming, any language) with a GIN index, and the
scope columns. Searches use pgvector's iterative index scan (``hnsw.iterative_scan``), so a
tenant's filter does not starve the nearest-neighbour list; ``relaxed_order`` (the hits come
back nearly in order and are sorted here), which the bench measured 2-3x faster than
``strict_order`` at 100k memories in ten tenants. Vectors travel as pgvector's text
form (``[0.1,0.2,...]``), so no driver extension is needed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg

from shipyard.errors import ConfigError, StoreError
from shipyard.stores.memory.base import (
    Hits,
    Items,
    MemoryItem,
    MemoryScope,
    SearchOptions,
    check_embedder,
    check_embedding,
    query_words,
    rank,
)

TABLE = "shipyard_memories"
_COLUMNS = "id, tenant_id, agent, subject, text, metadata, created_at, updated_at, expires_at"
_LIVE = "(expires_at IS NULL OR expires_at > now())"


def schema(dimensions: int) -> tuple[str, ...]:
    return (
        "CREATE EXTENSION IF NOT EXISTS vector",
        f"""CREATE TABLE IF NOT EXISTS {TABLE} (
            id text PRIMARY KEY, tenant_id text NOT NULL, agent text NOT NULL,
            subject text NOT NULL, text text NOT NULL, metadata jsonb NOT NULL,
            embedding vector({dimensions}) NOT NULL,
            tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED,
            created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
            expires_at timestamptz)""",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_scope ON {TABLE} (tenant_id, agent, subject, id)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_subject ON {TABLE} (tenant_id, subject)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_created ON {TABLE} (created_at)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_tsv ON {TABLE} USING gin (tsv)",
        f"""CREATE INDEX IF NOT EXISTS {TABLE}_hnsw ON {TABLE}
            USING hnsw (embedding vector_cosine_ops)""",
        f"CREATE TABLE IF NOT EXISTS {TABLE}_meta (key text PRIMARY KEY, value text NOT NULL)",
    )


class PostgresMemoryStore:
    """Memories in PostgreSQL + pgvector (``postgresql://user@host:port/db``)."""

    def __init__(self, dsn: str, *, embedder: str, dimensions: int) -> None:
        self._dsn = dsn
        self._embedder = embedder
        self._dimensions = dimensions
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, *, embedder: str, dimensions: int) -> PostgresMemoryStore:
        """``postgresql://`` or ``postgres://`` (a ``+asyncpg`` driver suffix is dropped)."""
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.split("+")[0] not in ("postgresql", "postgres"):
            raise ConfigError(f"invalid PostgreSQL memory store URL {url!r}")
        return cls(f"postgresql://{rest}", embedder=embedder, dimensions=dimensions)

    @asynccontextmanager
    async def _conn(self, operation: str) -> AsyncIterator[Any]:
        try:
            async with self._opening:  # concurrent first calls open one pool
                if self._pool is None:
                    self._pool = await self._open()
            async with self._pool.acquire() as conn:
                yield conn
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
            raise StoreError(
                f"memory store (postgresql) {operation} failed: {type(exc).__name__}: {exc}",
                details={"operation": f"memory {operation}"},
            ) from exc

    async def _open(self) -> Any:
        conn = await asyncpg.connect(self._dsn, timeout=5)
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", TABLE)
                for statement in schema(self._dimensions):
                    await conn.execute(statement)
                rows = dict(await conn.fetch(f"SELECT key, value FROM {TABLE}_meta"))
                found = (rows["embedder"], int(rows["dimensions"])) if rows else None
                check_embedder(found, self._embedder, self._dimensions)
                if found is None:
                    await conn.execute(
                        f"INSERT INTO {TABLE}_meta VALUES ('embedder', $1), ('dimensions', $2)",
                        self._embedder,
                        str(self._dimensions),
                    )
        finally:
            await conn.close()
        return await asyncpg.create_pool(
            self._dsn,
            min_size=1,
            max_size=10,
            server_settings={"hnsw.iterative_scan": "relaxed_order"},
        )

    # -- writes ----------------------------------------------------------------------------------

    async def add(self, item: MemoryItem, embedding: Sequence[float]) -> None:
        await self.add_many([(item, embedding)])

    async def add_many(self, items: Sequence[tuple[MemoryItem, Sequence[float]]]) -> None:
        rows = []
        for item, embedding in items:
            check_embedding(embedding, self._dimensions)
            rows.append((
                item.id, item.tenant_id, item.agent, item.subject, item.text,
                json.dumps(dict(item.metadata)), item.created_at, item.updated_at,
                item.expires_at, _vector(embedding),
            ))  # fmt: skip
        async with self._conn("add") as conn, conn.transaction():
            await conn.executemany(
                f"INSERT INTO {TABLE} ({_COLUMNS}, embedding) "
                "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10::vector)",
                rows,
            )

    async def update(self, item: MemoryItem, embedding: Sequence[float] | None = None) -> bool:
        values: list[Any] = [
            item.id, item.tenant_id, item.text, json.dumps(dict(item.metadata)),
            item.updated_at, item.expires_at,
        ]  # fmt: skip
        sets = "text = $3, metadata = $4::jsonb, updated_at = $5, expires_at = $6"
        if embedding is not None:
            check_embedding(embedding, self._dimensions)
            sets += ", embedding = $7::vector"
            values.append(_vector(embedding))
        async with self._conn("update") as conn:
            status = await conn.execute(
                f"UPDATE {TABLE} SET {sets} WHERE id = $1 AND tenant_id = $2 AND {_LIVE}", *values
            )
        return _count(status) > 0

    async def delete(self, tenant_id: str, memory_id: str) -> bool:
        return await self._delete("delete", "id = $1 AND tenant_id = $2", memory_id, tenant_id) > 0

    async def erase_subject(self, tenant: str, subject: str) -> int:
        return await self._delete("erase", "tenant_id = $1 AND subject = $2", tenant, subject)

    async def prune(self, tenant: str | None, before: datetime) -> int:
        return await self._delete(
            "prune",
            "($1::text IS NULL OR tenant_id = $1) "
            "AND (created_at < $2 OR (expires_at IS NOT NULL AND expires_at <= now()))",
            tenant,
            before,
        )

    async def _delete(self, operation: str, where: str, *values: Any) -> int:
        async with self._conn(operation) as conn:
            return _count(await conn.execute(f"DELETE FROM {TABLE} WHERE {where}", *values))

    # -- reads -----------------------------------------------------------------------------------

    async def get(self, tenant_id: str, memory_id: str) -> MemoryItem | None:
        async with self._conn("get") as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM {TABLE} WHERE id = $1 AND tenant_id = $2 AND {_LIVE}",
                memory_id,
                tenant_id,
            )
        return None if row is None else _item(row)

    async def list(self, scope: MemoryScope, *, limit: int, before: str | None = None) -> Items:
        where, values = _scope(scope)
        if before is not None:
            values.append(before)
            where += f" AND id < ${len(values)}"
        values.append(limit)
        async with self._conn("list") as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM {TABLE} WHERE {where} ORDER BY id DESC "
                f"LIMIT ${len(values)}",
                *values,
            )
        return [_item(row) for row in rows]

    async def search(
        self, scope: MemoryScope, embedding: Sequence[float], text: str, options: SearchOptions
    ) -> Hits:
        check_embedding(embedding, self._dimensions)
        where, values = _scope(scope)
        n = len(values)
        words = query_words(text) if options.hybrid else []
        async with self._conn("search") as conn:
            nearest = await conn.fetch(
                f"SELECT {_COLUMNS}, 1 - (embedding <=> ${n + 1}::vector) AS similarity "
                f"FROM {TABLE} WHERE {where} ORDER BY embedding <=> ${n + 1}::vector "
                f"LIMIT ${n + 2}",
                *values, _vector(embedding), options.candidates,
            )  # fmt: skip
            matched = []
            if words:
                query = f"to_tsquery('simple', ${n + 1})"
                matched = await conn.fetch(
                    f"SELECT {_COLUMNS} FROM {TABLE} WHERE {where} AND tsv @@ {query} "
                    f"ORDER BY ts_rank_cd(tsv, {query}) DESC, id LIMIT ${n + 2}",
                    *values, " | ".join(words), options.candidates,
                )  # fmt: skip
        items = {row["id"]: _item(row) for row in (*nearest, *matched)}
        hits = sorted(((row["id"], float(row["similarity"])) for row in nearest), key=_best)
        return rank(hits, [row["id"] for row in matched], items, options, datetime.now(UTC))

    async def ping(self) -> None:
        async with self._conn("ping") as conn:
            await conn.fetchval("SELECT 1")

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


def _scope(scope: MemoryScope) -> tuple[str, list[Any]]:
    """The WHERE clause of a scope ($1...), and its values."""
    clauses, values = ["tenant_id = $1", _LIVE], [scope.tenant_id]
    for column in ("agent", "subject"):
        value = getattr(scope, column)
        if value is not None:
            values.append(value)
            clauses.append(f"{column} = ${len(values)}")
    if scope.filters:
        values.append(json.dumps(dict(scope.filters)))
        clauses.append(f"metadata @> ${len(values)}::jsonb")
    return " AND ".join(clauses), values


def _best(hit: tuple[str, float]) -> tuple[float, str]:
    """Nearest first, then by id: relaxed iterative scans return hits nearly in order."""
    return -hit[1], hit[0]


def _vector(embedding: Sequence[float]) -> str:
    return "[" + ",".join(repr(float(x)) for x in embedding) + "]"


def _count(status: str) -> int:
    """Rows a command touched, from its status (``DELETE 3``)."""
    return int(status.rsplit(" ", 1)[-1])


def _item(row: Any) -> MemoryItem:
    return MemoryItem(
        id=row["id"],
        tenant_id=row["tenant_id"],
        agent=row["agent"],
        subject=row["subject"],
        text=row["text"],
        metadata=json.loads(row["metadata"]),
        created_at=row["created_at"].astimezone(UTC),
        updated_at=row["updated_at"].astimezone(UTC),
        expires_at=None if row["expires_at"] is None else row["expires_at"].astimezone(UTC),
    )
