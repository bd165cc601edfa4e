"""`python -m bench [--duration S] [--concurrency 1,8,32] [--only invoke] [--json PATH]`.

With two CPUs or more, each server (its whole process session) runs pinned to one CPU and this
process, the load generator, to another; the output says which (``--no-pin``: neither).

Exit code 0 when every benchmark was measured (whether or not targets were met), 1 when a
benchmark or server could not be measured, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import (
    blobs,
    budget,
    compute,
    guards,
    invoke,
    memory,
    routing,
    security,
    sessions,
    tasks,
    ui,
)
from bench.common import (
    BenchConfig,
    BenchFn,
    BenchResult,
    Pinning,
    format_table,
    pin,
    plan_pinning,
    progress,
)

# One module each, one line here. Observability on/off is part of invoke (default vs off rows).
BENCHMARKS: dict[str, BenchFn] = {
    "invoke": invoke.run,
    "sessions": sessions.run,
    "tasks": tasks.run,
    "security": security.run,
    "guards": guards.run,
    "blobs": blobs.run,
    "memory": memory.run,
    "ui": ui.run,
    "compute": compute.run,
    "routing": routing.run,
    "budget": budget.run,
}


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("concurrency values must be >= 1")
    return values


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=1.0, help="uncounted seconds per point")
    parser.add_argument("--concurrency", type=_int_list, default=(1, 8, 32), help="e.g. 1,8,32")
    parser.add_argument(
        "--only", type=_name_list, default=tuple(BENCHMARKS), help=f"of {','.join(BENCHMARKS)}"
    )
    parser.add_argument(
        "--targets",
        type=_name_list,
        default=invoke.TARGETS,
        help=f"invoke's targets, of {','.join(invoke.TARGETS)}",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and generator")
    parser.add_argument("--startup-timeout", type=float, default=60.0, help="seconds")
    parser.add_argument("--json", type=Path, default=None, help="write results to this file")
    # Tests the harness: the "shipyard" target runs the bare app.
    parser.add_argument("--fake-shipyard", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [name for name in args.only if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    unknown = [name for name in args.targets if name not in invoke.TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {unknown}; known: {', '.join(invoke.TARGETS)}")
    return args


def _report(result: BenchResult) -> None:
    print()
    print(f"== {result.name} ==")
    if result.rows:
        print(format_table(result.columns, result.rows))
    for line in result.summary:
        print(line)
    for line in result.failures:
        print(f"FAILED {line.splitlines()[0]}")
    sys.stdout.flush()


def _write_json(path: Path, config: BenchConfig, results: list[BenchResult]) -> None:
    doc: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "config": {
            "duration": config.duration,
            "warmup": config.warmup,
            "concurrencies": list(config.concurrencies),
            "targets": list(config.targets),
            "fake_shipyard": config.fake_shipyard,
            "pinning": config.pinning.note,
        },
        "results": {r.name: r.to_json() for r in results},
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    progress(f"wrote {path}")


async def amain(args: argparse.Namespace, pinning: Pinning | None = None) -> int:
    # SIGTERM cancels the run like Ctrl-C does, so that servers are stopped and files removed.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    config = BenchConfig(
        duration=args.duration,
        warmup=args.warmup,
        concurrencies=args.concurrency,
        targets=args.targets,
        startup_timeout=args.startup_timeout,
        fake_shipyard=args.fake_shipyard,
        pinning=pinning or Pinning(),
    )
    progress(
        f"bench: {', '.join(args.only)}; targets {', '.join(config.targets)}; {os.cpu_count()} CPUs"
    )
    progress(config.pinning.note)
    results = []
    for name in args.only:
        progress(f"== {name} ==")
        started = time.monotonic()
        result = await BENCHMARKS[name](config)
        result.summary.append(f"{name} took {time.monotonic() - started:.0f} s")
        results.append(result)
    for result in results:
        _report(result)
    if args.json is not None:
        _write_json(args.json, config, results)
    return 1 if any(r.failures for r in results) else 0


def _run(coro_args: argparse.Namespace) -> int:
    # Pinned before the loop starts a thread: every thread of this process inherits it.
    pinning = plan_pinning(not coro_args.no_pin)
    pin(0, pinning.load)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(amain(coro_args, pinning))
    return uvloop.run(amain(coro_args, pinning))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Even when started in the background with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _run(args)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: servers stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
