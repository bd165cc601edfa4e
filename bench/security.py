"""Security overhead: the stateless invoke with the audit log, rate limits and the egress policy
on (as shipped, plus a request rate limit per tenant and per key set far above the load, so
that every request is counted), against the same server with audit and limits off.

Issue target (security): at most 10% lower throughput with them on. The egress policy has no
switch: it guards tools' and webhooks' calls, which this echo agent does not make, so both
targets carry it.
"""

from __future__ import annotations

from bench import invoke
from bench.common import BenchConfig, BenchError, BenchResult, Row, progress
from bench.records import is_invalid

TARGET_LOSS = 0.10
HIGH = str(10**9)  # a limit never reached: every request is counted, none refused
TARGETS: dict[str, dict[str, str]] = {
    "security-on": {
        "SHIPYARD_AUDIT": "true",
        "SHIPYARD_LIMITS": "true",
        "SHIPYARD_LIMIT_REQUESTS_PER_MINUTE": HIGH,
        "SHIPYARD_LIMIT_KEY_REQUESTS_PER_MINUTE": HIGH,
    },
    "security-off": {"SHIPYARD_AUDIT": "false", "SHIPYARD_LIMITS": "false"},
}


def _row(rows: list[Row], target: str, concurrency: int) -> Row | None:
    return next(
        (r for r in rows if r["target"] == target and r["concurrency"] == concurrency), None
    )


def verdict(rows: list[Row], config: BenchConfig) -> list[str]:
    lines = []
    worst: float | None = None
    invalid = False
    for c in config.concurrencies:
        off, on = _row(rows, "security-off", c), _row(rows, "security-on", c)
        if off is None or on is None or not off["rps"]:
            continue
        invalid = invalid or is_invalid(on) or is_invalid(off)
        loss = 1 - on["rps"] / off["rps"]
        worst = loss if worst is None else max(worst, loss)
        cpu = on["cpu_ms_per_run"] - off["cpu_ms_per_run"]
        lines.append(
            f"security on/off c={c}: throughput {on['rps'] / off['rps']:.2f}x "
            f"({loss:+.1%} lost), CPU per run {cpu * 1000:+.0f} µs"
        )
    title = f"target <= {TARGET_LOSS:.0%} lower throughput with audit and limits on"
    if worst is None:
        lines.append(f"{title}: MISS (needs both targets measured)")
    elif invalid:
        lines.append(f"{title}: MISS (a row is INVALID)")
    else:
        lines.append(f"{title}: worst {worst:.1%} -> {'PASS' if worst <= TARGET_LOSS else 'MISS'}")
    return lines


async def run(config: BenchConfig) -> BenchResult:
    result = BenchResult("security", invoke.COLUMNS)
    result.summary.append(config.pinning.note)
    for name, env in TARGETS.items():
        try:
            await invoke.bench_target(name, config, result, env)
        except BenchError as exc:
            progress(f"{name}: FAILED: {exc}")
            result.failures.append(f"{name}: {exc}")
    result.summary.extend(verdict(result.rows, config))
    return result
