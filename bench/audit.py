"""Audit overhead: the stateless invoke with the audit log on (every request a hash-chained row,
written in batches), against the same server with it off (``SHIPYARD_AUDIT=false``).

Issue target: at most 10% lower throughput with the audit log on.
"""

from __future__ import annotations

from bench import invoke
from bench.common import BenchConfig, BenchError, BenchResult, Row, progress

TARGET_LOSS = 0.10
TARGETS = {"audit-off": {"SHIPYARD_AUDIT": "false"}, "audit-on": {"SHIPYARD_AUDIT": "true"}}


def _row(rows: list[Row], target: str, concurrency: int) -> Row | None:
    return next(
        (r for r in rows if r["target"] == target and r["concurrency"] == concurrency), None
    )


def verdict(rows: list[Row], config: BenchConfig) -> list[str]:
    lines = []
    worst: float | None = None
    for c in config.concurrencies:
        off, on = _row(rows, "audit-off", c), _row(rows, "audit-on", c)
        if off is None or on is None or not off["rps"]:
            continue
        loss = 1 - on["rps"] / off["rps"]
        worst = loss if worst is None else max(worst, loss)
        lines.append(f"on/off c={c}: throughput {on['rps'] / off['rps']:.2f}x ({loss:+.1%} lost)")
    title = f"target <= {TARGET_LOSS:.0%} lower throughput with the audit log on"
    if worst is None:
        lines.append(f"{title}: n/a (needs both targets measured)")
    else:
        lines.append(f"{title}: worst {worst:.1%} -> {'PASS' if worst <= TARGET_LOSS else 'MISS'}")
    return lines


async def run(config: BenchConfig) -> BenchResult:
    result = BenchResult("audit", invoke.COLUMNS)
    for name, env in TARGETS.items():
        try:
            await invoke.bench_target(name, config, result, env_extra=env)
        except BenchError as exc:
            progress(f"{name}: FAILED: {exc}")
            result.failures.append(f"{name}: {exc}")
    result.summary.extend(verdict(result.rows, config))
    return result
