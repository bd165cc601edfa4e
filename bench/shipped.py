"""The invoke benchmark's ratios and targets (issue 19), from the rows of one run.

- As shipped (``default``): <= 0.33 ms of server CPU per recorded run at c=32; <= 2x the bare
  app's CPU per request (c=32); p50 at c=1 within 0.5 ms of the bare app.
- Observability on (``default``) against off (``off``): <= 10% lower throughput, at every
  concurrency measured (the worst counts). The same rows, not a second measurement.
- Production path: with records on PostgreSQL (``postgres``) within 1.5x the server CPU per run
  of the SQLite path (``default``), at c=32.

A target whose rows are INVALID (their runs are not in the records) or missing is a MISS.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.common import Row
from bench.records import is_invalid

TARGET_CPU_MS = 0.33
TARGET_CPU_X_BARE = 2.0
TARGET_P50_DELTA_MS = 0.5
TARGET_OBS_LOSS = 0.10
TARGET_PG_X_SQLITE = 1.5
HIGH_C = 32  # the concurrency of the CPU targets (the highest measured when 32 is not)


def find(rows: Sequence[Row], target: str, concurrency: int) -> Row | None:
    return next(
        (r for r in rows if r["target"] == target and r["concurrency"] == concurrency), None
    )


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def add_ratios(rows: list[Row]) -> None:
    """Each Shipyard row's CPU per run, throughput and p50 against the bare app's at its
    concurrency (same run)."""
    for row in rows:
        bare = find(rows, "bare", row["concurrency"])
        if row["target"] == "bare" or bare is None:
            continue
        row["cpu_x_bare"] = _ratio(row["cpu_ms_per_run"], bare["cpu_ms_per_run"])
        row["rps_x_bare"] = _ratio(row["rps"], bare["rps"])
        if row["p50_ms"] is not None and bare["p50_ms"] is not None:
            row["p50_delta_ms"] = round(row["p50_ms"] - bare["p50_ms"], 3)


def _high_c(concurrencies: Sequence[int]) -> int:
    return HIGH_C if HIGH_C in concurrencies else max(concurrencies)


def _unusable(title: str, *rows: tuple[str, Row | None]) -> str | None:
    """The verdict line when a row the target needs is missing or invalid, else None."""
    missing = [name for name, row in rows if row is None]
    if missing:
        return f"{title}: MISS (not measured: {', '.join(missing)})"
    invalid = [name for name, row in rows if is_invalid(row)]
    if invalid:
        return f"{title}: MISS (invalid: {', '.join(invalid)} rows do not match the records)"
    return None


def _verdict(title: str, text: str, ok: bool, row: Row) -> str:
    note = f"; {row['errors']} errors" if row.get("errors") else ""
    return f"{title}: {text}{note} -> {'PASS' if ok and not note else 'MISS'}"


def cpu_verdicts(rows: Sequence[Row], concurrencies: Sequence[int]) -> list[str]:
    c = _high_c(concurrencies)
    ship, bare = find(rows, "default", c), find(rows, "bare", c)
    lines = []
    title = f"target as shipped <= {TARGET_CPU_MS} ms server CPU per recorded run at c={c}"
    bad = _unusable(title, ("default", ship))
    if bad or ship is None:
        lines.append(bad or title)
    else:
        cpu = ship["cpu_ms_per_run"]
        lines.append(
            _verdict(title, f"{cpu:.3f} ms", cpu is not None and cpu <= TARGET_CPU_MS, ship)
        )
    title = f"target as shipped <= {TARGET_CPU_X_BARE:g}x the bare app's CPU per request at c={c}"
    bad = _unusable(title, ("default", ship), ("bare", bare))
    if bad or ship is None:
        lines.append(bad or title)
    else:
        x = ship.get("cpu_x_bare")
        text = f"{x:.2f}x" if x is not None else "n/a"
        lines.append(_verdict(title, text, x is not None and x <= TARGET_CPU_X_BARE, ship))
    return lines


def latency_verdict(rows: Sequence[Row]) -> str:
    ship, bare = find(rows, "default", 1), find(rows, "bare", 1)
    title = f"target as shipped p50 at c=1 within {TARGET_P50_DELTA_MS} ms of the bare app"
    bad = _unusable(title, ("default c=1", ship), ("bare c=1", bare))
    if bad or ship is None or bare is None:
        return bad or title
    delta = ship.get("p50_delta_ms")
    text = f"{ship['p50_ms']:.2f} vs {bare['p50_ms']:.2f} ms ({delta or 0:+.2f} ms)"
    return _verdict(title, text, delta is not None and delta <= TARGET_P50_DELTA_MS, ship)


def observability(rows: Sequence[Row], concurrencies: Sequence[int]) -> list[str]:
    """On (``default``) against off, at each concurrency, and the target on the worst."""
    lines, worst, used = [], None, []
    for c in concurrencies:
        on, off = find(rows, "default", c), find(rows, "off", c)
        if on is None or off is None or not off["rps"]:
            continue
        used += [on, off]
        loss = 1 - on["rps"] / off["rps"]
        worst = loss if worst is None else max(worst, loss)
        extra = (on["cpu_ms_per_run"] or 0) - (off["cpu_ms_per_run"] or 0)
        lines.append(
            f"observability on/off c={c}: throughput {on['rps'] / off['rps']:.2f}x "
            f"({loss:+.1%} lost), CPU per run {extra * 1000:+.0f} µs, "
            f"p50 {on['p50_ms'] - off['p50_ms']:+.2f} ms"
        )
    title = f"target observability on vs off <= {TARGET_OBS_LOSS:.0%} lower throughput (default)"
    if worst is None:
        lines.append(f"{title}: MISS (not measured: needs default and off)")
    elif any(is_invalid(r) for r in used):
        lines.append(f"{title}: MISS (invalid rows: runs not in the records)")
    else:
        lines.append(_verdict(title, f"worst {worst:.1%}", worst <= TARGET_OBS_LOSS, {"errors": 0}))
    return lines


def postgres_verdict(rows: Sequence[Row], concurrencies: Sequence[int]) -> str:
    c = _high_c(concurrencies)
    pg, lite = find(rows, "postgres", c), find(rows, "default", c)
    title = (
        f"target invoke with records on PostgreSQL <= {TARGET_PG_X_SQLITE:g}x the SQLite path's "
        f"server CPU per run at c={c}"
    )
    bad = _unusable(title, ("postgres", pg), ("default", lite))
    if bad or pg is None or lite is None:
        return bad or title
    x = _ratio(pg["cpu_ms_per_run"], lite["cpu_ms_per_run"])
    text = (
        "n/a"
        if x is None
        else f"{pg['cpu_ms_per_run']:.3f} vs {lite['cpu_ms_per_run']:.3f} ms ({x:.2f}x)"
    )
    return _verdict(
        title,
        text + " (PostgreSQL's own CPU not counted)",
        x is not None and x <= TARGET_PG_X_SQLITE,
        pg,
    )


def ratio_lines(rows: Sequence[Row]) -> list[str]:
    lines = []
    for row in rows:
        if row["target"] == "bare" or row.get("cpu_x_bare") is None:
            continue
        lines.append(
            f"{row['target']}/bare c={row['concurrency']}: CPU per run {row['cpu_x_bare']:.2f}x, "
            f"throughput {row['rps_x_bare']:.2f}x, p50 {row.get('p50_delta_ms', 0):+.2f} ms"
        )
    return lines


def report(rows: Sequence[Row], concurrencies: Sequence[int]) -> list[str]:
    """Every summary line after the table: invalid rows, ratios, targets."""
    lines = [
        f"INVALID {r['target']} c={r['concurrency']}: {r['invalid']}" for r in rows if is_invalid(r)
    ]
    lines += ratio_lines(rows)
    lines += cpu_verdicts(rows, concurrencies)
    lines.append(latency_verdict(rows))
    lines += observability(rows, concurrencies)
    lines.append(postgres_verdict(rows, concurrencies))
    return lines
