"""Observability overhead: the stateless invoke with event logs (JSON, to the server's log
file), metrics and tracing (spans kept in the record store) all on, against the same server
with all of them off.

Issue target: at most 15% lower throughput with everything on.
"""

from __future__ import annotations

from bench import invoke
from bench.common import BenchConfig, BenchError, BenchResult, Row, progress

TARGET_LOSS = 0.15

OFF = {
    "SHIPYARD_LOG_EVENTS": "false",
    "SHIPYARD_METRICS": "false",
    "SHIPYARD_TRACING": "false",
}
ON = {
    "SHIPYARD_LOG_LEVEL": "info",
    "SHIPYARD_LOG_FORMAT": "json",
    "SHIPYARD_LOG_EVENTS": "true",
    "SHIPYARD_METRICS": "true",
    "SHIPYARD_TRACING": "true",
}
TARGETS = {"obs-off": OFF, "obs-on": ON}


def _row(rows: list[Row], target: str, concurrency: int) -> Row | None:
    return next(
        (r for r in rows if r["target"] == target and r["concurrency"] == concurrency), None
    )


def verdict(rows: list[Row], config: BenchConfig) -> list[str]:
    lines = []
    worst: float | None = None
    for c in config.concurrencies:
        off, on = _row(rows, "obs-off", c), _row(rows, "obs-on", c)
        if off is None or on is None or not off["rps"]:
            continue
        loss = 1 - on["rps"] / off["rps"]
        worst = loss if worst is None else max(worst, loss)
        lines.append(
            f"on/off c={c}: throughput {on['rps'] / off['rps']:.2f}x "
            f"({loss:+.1%} lost), p50 {on['p50_ms'] - off['p50_ms']:+.2f} ms"
        )
    title = f"target <= {TARGET_LOSS:.0%} lower throughput with everything on"
    if worst is None:
        lines.append(f"{title}: n/a (needs both targets measured)")
    else:
        ok = worst <= TARGET_LOSS
        lines.append(f"{title}: worst {worst:.1%} -> {'PASS' if ok else 'MISS'}")
    return lines


async def run(config: BenchConfig) -> BenchResult:
    result = BenchResult("observability", invoke.COLUMNS)
    for name, env in TARGETS.items():
        try:
            await invoke.bench_target(name, config, result, env_extra=env)
        except BenchError as exc:
            progress(f"{name}: FAILED: {exc}")
            result.failures.append(f"{name}: {exc}")
    result.summary.extend(verdict(result.rows, config))
    return result
