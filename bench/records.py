"""What the records say: counts by status, read beside the server, so that every benchmark row
checks that the runs and tasks it counted are in the records with the status it assumed.

A row counts before and after its point (`Check`): a run answered 200 must be in the records as
``succeeded``; a task counted as drained must be ``succeeded``. A row whose records do not match
is printed INVALID and no target passes on it ("nothing lost and nothing imagined").

Records live in a SQLite file in the server's home (read here read-only) or on PostgreSQL at
`DATABASE_URL` (default: a ``shipyard_bench`` database on the local server, dropped and created
again before each point that uses it).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DATABASE_URL = os.environ.get(
    "SHIPYARD_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/shipyard_bench"
)
"""The PostgreSQL database of the production-path rows (emptied before each point)."""

# Which runs a kind of row counts (a turn's run names its session; a task's, its task).
RUN_KINDS = {
    "invoke": "session_id IS NULL AND task_id IS NULL",
    "turn": "session_id IS NOT NULL AND task_id IS NULL",
}


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _connect(url: str) -> Any:
    import asyncpg

    return await asyncpg.connect(_plain(url), timeout=5)


async def postgres_unreachable(url: str = DATABASE_URL) -> str | None:
    """Why PostgreSQL at ``url``'s server cannot be used, or None."""
    try:
        conn = await _connect(_maintenance_url(url))
    except Exception as exc:  # asyncpg raises OSError, its own errors, TimeoutError
        return f"PostgreSQL unreachable at {_redacted(url)}: {type(exc).__name__}: {exc}"
    await conn.close()
    return None


def _maintenance_url(url: str) -> str:
    parts = urlsplit(_plain(url))
    return urlunsplit(parts._replace(path="/postgres"))


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}@{host}{port}"))


async def fresh_database(url: str = DATABASE_URL) -> None:
    """Drop and create the database ``url`` names: each point starts from empty records (the
    server migrates it when it starts)."""
    name = urlsplit(url).path.lstrip("/")
    if not name or name == "postgres" or '"' in name:
        raise ValueError(f"refusing to recreate database {name!r}")
    conn = await _connect(_maintenance_url(url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


@dataclass(frozen=True)
class Records:
    """One server's record store: a SQLite file in ``home``, or ``database_url``."""

    home: Path
    database_url: str | None = None

    async def fetch(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` (``?`` placeholders); none when the tables do not exist yet."""
        if self.database_url is not None:
            for n in range(len(args)):
                sql = sql.replace("?", f"${n + 1}", 1)
            conn = await _connect(self.database_url)
            try:
                return [tuple(r) for r in await conn.fetch(sql, *args)]
            except Exception as exc:  # no table yet: nothing recorded
                if type(exc).__name__ == "UndefinedTableError":
                    return []
                raise
            finally:
                await conn.close()
        db = self.home / "shipyard.db"
        if not db.exists():
            return []
        try:
            uri = f"file:{db}?mode=ro"
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
                return [tuple(r) for r in conn.execute(sql, args)]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise

    async def _rows(self, sql: str) -> list[tuple[str, int]]:
        return [(str(s), int(n)) for s, n in await self.fetch(sql)]

    async def runs(self, kind: str) -> dict[str, int]:
        """Runs of ``kind`` (`RUN_KINDS`) by status."""
        where = RUN_KINDS[kind]
        return dict(await self._rows(f"SELECT status, COUNT(*) FROM runs WHERE {where} GROUP BY 1"))

    async def tasks(self) -> dict[str, int]:
        """Tasks by status."""
        return dict(await self._rows("SELECT status, COUNT(*) FROM tasks GROUP BY 1"))


@dataclass
class Tally:
    tasks: int
    succeeded: int
    extra_successes: int  # "succeeded" transitions beyond one per task: must be 0
    redeliveries: int  # "running" transitions beyond one per task
    worker_span_s: float | None  # first "running" to last "succeeded"


def _when(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


async def tally(records: Records, skip: str) -> Tally:
    """What the records say about every task but ``skip`` (the sanity check's)."""
    [(tasks, succeeded)] = await records.fetch(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END), 0) "
        "FROM tasks WHERE id != ?",
        skip,
    ) or [(0, 0)]
    moves = "FROM task_transitions WHERE task_id != ?"
    counts = dict(await records.fetch(f"SELECT status, COUNT(*) {moves} GROUP BY status", skip))
    [(start, end)] = await records.fetch(
        f"SELECT MIN(CASE WHEN status = 'running' THEN at END), "
        f"MAX(CASE WHEN status = 'succeeded' THEN at END) {moves}",
        skip,
    ) or [(None, None)]
    start, end = _when(start), _when(end)
    return Tally(
        tasks=int(tasks),
        succeeded=int(succeeded),
        extra_successes=int(counts.get("succeeded", 0)) - int(succeeded),
        redeliveries=int(counts.get("running", 0)) - int(tasks),
        worker_span_s=(end - start).total_seconds() if start and end else None,
    )


@dataclass
class Check:
    """What one row counted against what the records gained during it.

    ``exact``: the records must hold exactly ``counted`` more ``status`` (tasks drained);
    otherwise at least as many (runs answered 200: a request cut off as a point ends may still
    be recorded). ``status`` None: any status (a task acknowledged is recorded, whatever it
    became since).
    """

    what: str  # "runs" or "tasks"
    counted: int
    status: str | None = "succeeded"
    exact: bool = False
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    expect_records: bool = True  # False: the target records nothing (the bare app)

    def gained(self, status: str | None = None) -> int:
        keys = set(self.before) | set(self.after)
        chosen = keys if status is None else {status}
        return sum(self.after.get(k, 0) - self.before.get(k, 0) for k in chosen)

    def problem(self) -> str | None:
        """Why the row is invalid, or None."""
        if not self.expect_records:
            return None
        got = self.gained(self.status)
        label = f"{self.what} {self.status or 'recorded'}"
        if self.exact and got != self.counted:
            return f"{got:,} {label} in the records, {self.counted:,} counted"
        if not self.exact and got < self.counted:
            return f"only {got:,} {label} in the records for {self.counted:,} counted"
        return None

    def apply(self, row: dict[str, Any]) -> None:
        """Mark ``row``: its ``check`` column (ok / INVALID / - for a target without records)."""
        if not self.expect_records:
            row["check"] = "-"
            return
        row["recorded"] = self.gained(self.status)
        problem = self.problem()
        row["check"] = "INVALID" if problem else "ok"
        if problem:
            row["invalid"] = problem


def is_invalid(row: dict[str, Any] | None) -> bool:
    return row is not None and row.get("check") == "INVALID"


def invalid_lines(rows: list[dict[str, Any]], label: Any) -> list[str]:
    """One summary line per INVALID row; ``label(row)`` names it."""
    return [f"INVALID {label(r)}: {r['invalid']}" for r in rows if is_invalid(r)]
