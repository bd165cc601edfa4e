"""Guard overhead: the stateless invoke with a typical guard policy on (``SHIPYARD_GUARDS``:
injection on the input and tool results, PII and secrets on the answer and each model
response), against the same server with no guards.

Issue target (guards): at most 15% lower throughput with the policy on. The detectors' own
latency per text is measured by ``shipyard guard eval``. The policy names the built-in
detectors: a server without them fails to start, and the row says so.
"""

from __future__ import annotations

import json

from bench import invoke
from bench.common import BenchConfig, BenchError, BenchResult, Row, progress
from bench.records import is_invalid

TARGET_LOSS = 0.15
POLICY = json.dumps(
    {
        "rules": [
            {"detector": "injection", "surfaces": ["input", "tool_result"], "action": "block"},
            {"detector": "pii", "surfaces": ["output"], "action": "redact"},
            {"detector": "secrets", "surfaces": ["output"], "action": "redact"},
        ]
    }
)
TARGETS: dict[str, dict[str, str]] = {
    "guards-on": {"SHIPYARD_GUARDS": POLICY},
    "guards-off": {"SHIPYARD_GUARDS": ""},
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
        off, on = _row(rows, "guards-off", c), _row(rows, "guards-on", c)
        if off is None or on is None or not off["rps"]:
            continue
        invalid = invalid or is_invalid(on) or is_invalid(off)
        loss = 1 - on["rps"] / off["rps"]
        worst = loss if worst is None else max(worst, loss)
        cpu = on["cpu_ms_per_run"] - off["cpu_ms_per_run"]
        lines.append(
            f"guards on/off c={c}: throughput {on['rps'] / off['rps']:.2f}x "
            f"({loss:+.1%} lost), CPU per run {cpu * 1000:+.0f} µs"
        )
    title = f"target <= {TARGET_LOSS:.0%} lower throughput with the guard policy on"
    if worst is None:
        lines.append(f"{title}: MISS (needs both targets measured)")
    elif invalid:
        lines.append(f"{title}: MISS (a row is INVALID)")
    else:
        lines.append(f"{title}: worst {worst:.1%} -> {'PASS' if worst <= TARGET_LOSS else 'MISS'}")
    return lines


async def run(config: BenchConfig) -> BenchResult:
    result = BenchResult("guards", invoke.COLUMNS)
    result.summary.append(config.pinning.note)
    for name, env in TARGETS.items():
        try:
            await invoke.bench_target(name, config, result, env)
        except BenchError as exc:
            progress(f"{name}: FAILED: {exc}")
            result.failures.append(f"{name}: {exc}")
    result.summary.extend(verdict(result.rows, config))
    return result
