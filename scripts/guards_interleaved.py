"""Server CPU per invoke with guards on and off, measured interleaved: both servers of
``make bench --only guards`` run at once and take turns under load, so a change in the
machine's other load hits both alike (the bench measures all of "on", then all of "off").

    python scripts/guards_interleaved.py --rounds 8 --seconds 3 -c 8

Prints each turn (runs/s, CPU ms per run) and the totals: CPU per run on and off, their
difference and ratio (docs/guards.md, "Where a served run's guard cost goes").
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.guards import SPEC
from bench.invoke import BODY, PATH, Target, make_target
from bench.loadgen import build_request, run_load
from bench.servers import HOST, Server, free_port, running_server


def _target(on: bool) -> tuple[Target, int, Path]:
    home, port = Path(tempfile.mkdtemp(prefix="guards-interleaved-")), free_port()
    config = types.SimpleNamespace(fake_shipyard=False)
    target = make_target(
        f"guards-{'on' if on else 'off'}", port, home, config, SPEC.on if on else SPEC.off
    )
    return target, port, home


async def _turn(
    server: Server, target: Target, port: int, seconds: float, c: int
) -> tuple[float, int]:
    """One turn of load: (server CPU ms, runs)."""
    headers = {"Authorization": f"Bearer {target.api_key}", "Content-Type": "application/json"}
    request = build_request("POST", HOST, port, PATH, headers, BODY)
    result = await run_load(
        HOST, port, request, concurrency=c, duration=seconds, warmup=0.5,
        cpu_seconds=server.cpu_seconds,
    )  # fmt: skip
    summary = result.summary()
    print(f"  {target.name}: {summary['rps']:,.0f} runs/s, {summary['cpu_ms_per_run']} ms/run")
    return summary["cpu_ms_per_run"] * summary["runs"], summary["runs"]


async def main(rounds: int, seconds: float, c: int) -> None:
    (on, on_port, on_home), (off, off_port, off_home) = _target(True), _target(False)
    async with (
        running_server(on.spec, on_port, on_home, 120.0) as on_server,
        running_server(off.spec, off_port, off_home, 120.0) as off_server,
    ):
        turns = {True: (on_server, on, on_port), False: (off_server, off, off_port)}
        totals = {True: [0.0, 0], False: [0.0, 0]}
        for n in range(rounds):
            for guarded in (True, False) if n % 2 == 0 else (False, True):
                server, target, port = turns[guarded]
                cpu_ms, runs = await _turn(server, target, port, seconds, c)
                totals[guarded][0] += cpu_ms
                totals[guarded][1] += runs
    per_run = {k: cpu / runs for k, (cpu, runs) in totals.items()}
    print(
        f"CPU per run: on {per_run[True]:.3f} ms, off {per_run[False]:.3f} ms, "
        f"{(per_run[True] - per_run[False]) * 1000:+.0f} µs, x{per_run[True] / per_run[False]:.3f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("-c", type=int, default=8, help="clients at a time")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.seconds, args.c))
