"""One feature on against off: the stateless invoke on two Shipyard servers that differ only in
the feature's settings, and the throughput it costs (``--only security``, ``--only guards``)."""

from __future__ import annotations

from dataclasses import dataclass

from bench import invoke
from bench.common import BenchConfig, BenchError, BenchResult, Row, progress
from bench.records import is_invalid


@dataclass(frozen=True)
class OnOff:
    name: str  # the benchmark; its targets are "<name>-on" and "<name>-off"
    on: dict[str, str]
    off: dict[str, str]
    target_loss: float
    what: str  # "with the guard policy on"


def _row(rows: list[Row], target: str, concurrency: int) -> Row | None:
    return next(
        (r for r in rows if r["target"] == target and r["concurrency"] == concurrency), None
    )


def verdict(spec: OnOff, rows: list[Row], config: BenchConfig) -> list[str]:
    lines = []
    worst: float | None = None
    invalid = False
    for c in config.concurrencies:
        off, on = _row(rows, f"{spec.name}-off", c), _row(rows, f"{spec.name}-on", c)
        if off is None or on is None or not off["rps"]:
            continue
        invalid = invalid or is_invalid(on) or is_invalid(off)
        loss = 1 - on["rps"] / off["rps"]
        worst = loss if worst is None else max(worst, loss)
        cpu = on["cpu_ms_per_run"] - off["cpu_ms_per_run"]
        lines.append(
            f"{spec.name} on/off c={c}: throughput {on['rps'] / off['rps']:.2f}x "
            f"({loss:+.1%} lost), CPU per run {cpu * 1000:+.0f} µs"
        )
    title = f"target <= {spec.target_loss:.0%} lower throughput {spec.what}"
    if worst is None:
        lines.append(f"{title}: MISS (needs both targets measured)")
    elif invalid:
        lines.append(f"{title}: MISS (a row is INVALID)")
    else:
        passed = worst <= spec.target_loss
        lines.append(f"{title}: worst {worst:.1%} -> {'PASS' if passed else 'MISS'}")
    return lines


async def run(spec: OnOff, config: BenchConfig) -> BenchResult:
    result = BenchResult(spec.name, invoke.COLUMNS)
    result.summary.append(config.pinning.note)
    for suffix, env in (("on", spec.on), ("off", spec.off)):
        name = f"{spec.name}-{suffix}"
        try:
            await invoke.bench_target(name, config, result, env)
        except BenchError as exc:
            progress(f"{name}: FAILED: {exc}")
            result.failures.append(f"{name}: {exc}")
    result.summary.extend(verdict(spec, result.rows, config))
    return result
