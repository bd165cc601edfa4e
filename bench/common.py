"""Types shared by the benchmarks and the command line."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Row = dict[str, Any]

REDIS_URL = os.environ.get("SHIPYARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
"""The Redis the state-store points use (sessions, and tasks' cancel channel)."""


def redis_unreachable(url: str = REDIS_URL) -> str | None:
    """Why Redis at ``url`` cannot be used, or None."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1):
            return None
    except OSError as exc:
        return f"Redis unreachable at {url}: {exc}"


class BenchError(Exception):
    """A benchmark (or one of its targets) could not be measured."""


@dataclass(frozen=True)
class Pinning:
    """Which CPUs the servers (each its whole process session) and the load generator (this
    process) run on; None: not pinned."""

    server: frozenset[int] | None = None
    load: frozenset[int] | None = None
    note: str = "not pinned"


def plan_pinning(enabled: bool = True) -> Pinning:
    """Server on the first CPU this process may use, load generator on the second; unpinned
    (and said so) with fewer than two."""
    if not enabled:
        return Pinning(note="not pinned (--no-pin): server and load generator share every CPU")
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return Pinning(note="not pinned: no sched_setaffinity on this platform")
    if len(cpus) < 2:
        return Pinning(note=f"not pinned: {len(cpus)} CPU; server and load generator share it")
    server, load = cpus[0], cpus[1]
    return Pinning(
        frozenset({server}),
        frozenset({load}),
        f"pinned: server (its whole process session) on CPU {server}, "
        f"load generator on CPU {load} (of {len(cpus)})",
    )


def pin(pid: int, cpus: frozenset[int] | None) -> None:
    """Pin ``pid`` (0: this process) to ``cpus``; its later threads and children inherit."""
    if cpus is not None:
        os.sched_setaffinity(pid, cpus)


def all_cpus() -> frozenset[int] | None:
    """Every CPU of the machine (workers run unpinned), None off Linux."""
    count = os.cpu_count()
    return frozenset(range(count)) if count and hasattr(os, "sched_setaffinity") else None


@dataclass(frozen=True)
class BenchConfig:
    duration: float = 5.0
    warmup: float = 1.0
    concurrencies: tuple[int, ...] = (1, 8, 32)
    targets: tuple[str, ...] = ("default", "json", "off", "postgres", "bare")
    startup_timeout: float = 60.0
    # Testing the harness: run the Shipyard targets with the bare app (which records nothing).
    fake_shipyard: bool = False
    pinning: Pinning = field(default_factory=Pinning)

    @property
    def shipyard(self) -> bool:
        """A real Shipyard server is measured (sessions and tasks need one)."""
        return not self.fake_shipyard and any(t != "bare" for t in self.targets)


@dataclass
class Column:
    key: str
    title: str
    fmt: str = "{}"


@dataclass
class BenchResult:
    name: str
    columns: list[Column]
    rows: list[Row] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rows": self.rows,
            "summary": self.summary,
            "failures": self.failures,
        }


BenchFn = Callable[[BenchConfig], Awaitable[BenchResult]]


def progress(message: str) -> None:
    print(message, flush=True)


def _cell(column: Column, row: Row) -> str:
    value = row.get(column.key)
    if value is None:
        return "-"
    return column.fmt.format(value)


def format_table(columns: Sequence[Column], rows: Sequence[Row]) -> str:
    cells = [[c.title for c in columns]] + [[_cell(c, r) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = []
    for n, line in enumerate(cells):
        first = line[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        lines.append("  ".join([first, *rest]))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)
