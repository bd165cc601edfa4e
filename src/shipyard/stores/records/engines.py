"""Engines and migrations for the SQL record store: URL parsing, SQLite pragmas, Alembic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from shipyard.errors import ConfigError, StoreError

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 5_000
_PG_MIGRATION_LOCK = 0x5348_4950_5944  # "SHIPYD": one migrator at a time across replicas
_SCHEMES = ("sqlite", "sqlite+aiosqlite", "postgresql", "postgres", "postgresql+asyncpg")


def parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except exc.ArgumentError as e:
        raise ConfigError(f"invalid record store URL: {url!r}") from e
    if parsed.drivername not in _SCHEMES:
        supported = ", ".join(f"{s}://" for s in _SCHEMES)
        raise ConfigError(f"unsupported record store URL scheme {parsed.drivername!r}: {supported}")
    return parsed


def json_dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # integers beyond 64 bits and the like: the slower encoder takes them
        return json.dumps(value, default=str)


def json_loads(text: str | bytes) -> Any:
    """orjson's parser, or, for JSON it refuses (a lone surrogate escaped, ``"\\ud800"``, as an
    older version could store), the standard library's: the row still loads, so its task can
    still be run to an outcome, listed and cancelled, and the reader sees what is wrong with it
    (``stores.storable``)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def create_engine(url: URL, **kwargs: Any) -> AsyncEngine:
    return create_async_engine(
        url, json_serializer=json_dumps, json_deserializer=json_loads, **kwargs
    )


def sqlite_engine(url: URL) -> AsyncEngine:
    url = url.set(drivername="sqlite+aiosqlite")
    database = url.database or ""
    if database in ("", ":memory:"):
        engine = create_engine(url, poolclass=StaticPool)
    else:
        try:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the folder of {database!r}: {e}") from e
        engine = create_engine(url)
    event.listen(engine.sync_engine, "connect", sqlite_on_connect)
    return engine


def sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    sqlite_pragmas(dbapi_connection)


def sqlite_pragmas(dbapi_connection: Any, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


# -- migrations ---------------------------------------------------------------------------------


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    return cfg


def upgrade(conn: Connection) -> tuple[str | None, str]:
    """Upgrade to the newest revision; the revisions before (``None``: no schema) and after."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
    before = _revision(conn)
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")
    return before, _revision(conn) or "base"


def _revision(conn: Connection) -> str | None:
    heads = current_heads(conn)
    return ",".join(sorted(heads)) if heads else None


def current_heads(conn: Connection) -> set[str]:
    return set(MigrationContext.configure(conn).get_current_heads())
