"""Reading every store directly, for a marker string: the SQL databases (every row of every
table), the state store (every key of the SQLite file, or of Redis), and the blobs (every file
of the folder, or every object of each region's S3 bucket). Used to prove what erasure and
retention removed, without going through Shipyard's own reads."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from shipyard.runtime.services import Services


def sqlite_text(path: Path, *, library: Any = sqlite3) -> str:
    """Every row of every table of a SQLite file, as text. ``library``: the driver that writes
    the file (``apsw`` for the memory store: Python's own SQLite, an older library, does not
    see that store's latest writes in the WAL once it has read the file). Virtual tables (FTS5,
    sqlite-vec's ``vec0``) are read through their shadow tables, which hold their rows: their
    modules need not be loaded here."""
    with closing(library.Connection(str(path))) as db:
        tables = [
            r[0]
            for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type='table' "
                "AND sql NOT LIKE 'CREATE VIRTUAL TABLE%'"
            )
        ]
        return "\n".join(
            repr(row) for table in tables for row in db.execute(f'SELECT * FROM "{table}"')
        )


async def postgres_text(url: str) -> str:
    """Every row of every table of the database's public schema, as text."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"), timeout=5)
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        parts = []
        for table in tables:
            rows = await conn.fetch(f'SELECT t::text AS row FROM "{table["table_name"]}" t')
            parts += [row["row"] for row in rows]
        return "\n".join(parts)
    finally:
        await conn.close()


async def redis_text(url: str, pattern: str = "*") -> str:
    """Every value of every key matching ``pattern``, as text."""
    client = aioredis.Redis.from_url(url)
    parts: list[bytes] = []
    try:
        async for key in client.scan_iter(match=pattern, count=1000):
            kind = (await client.type(key)).decode()
            if kind == "string":
                parts.append((await client.get(key)) or b"")
            elif kind == "list":
                parts += await client.lrange(key, 0, -1)
            elif kind == "hash":
                parts += [k + b"=" + v for k, v in (await client.hgetall(key)).items()]
            elif kind == "zset":
                parts += await client.zrange(key, 0, -1)
            elif kind == "set":
                parts += list(await client.smembers(key))
    finally:
        await client.aclose()
    return b"\n".join(parts).decode("utf-8", "replace")


async def blob_text(services: Services) -> str:
    """Every blob of every region's store, read straight from the store, as text."""
    assert services.artifacts is not None
    parts: list[bytes] = []
    for store in services.artifacts.blobs.stores.values():
        async for info in store.list(""):
            parts.append(b"".join([chunk async for chunk in store.get(info.key)]))
    return b"\n".join(parts).decode("utf-8", "replace")


def folder_text(folder: Path) -> str:
    """Every file under ``folder``, as text."""
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file()
    )
