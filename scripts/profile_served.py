"""Instructions per served invoke, guards on or off: the server of ``make bench --only guards``
under callgrind, counting only N invokes (on a shared machine, time says little; instruction
counts say more, though the server's timers — batched commits, the audit flush — make them
vary by a few percent from run to run: repeat and compare means).

    python scripts/profile_served.py on -n 300        # the bench's guard policy
    python scripts/profile_served.py off -n 300       # no guards

Starts ``shipyard serve`` (the bench's app and settings) under
``valgrind --tool=callgrind --instr-atstart=no``, sends 40 invokes uncounted, turns the
instrumentation on (``callgrind_control -i on``), sends ``-n`` invokes from ``-c`` clients,
turns it off, stops the server and prints the instructions per invoke. ``--out`` keeps the
callgrind file for ``callgrind_annotate`` (docs/guards.md, "Cost and the fast path").
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import subprocess
import sys
import tempfile
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.guards import SPEC
from bench.invoke import BODY, PATH, make_target
from bench.loadgen import fetch
from bench.servers import HOST, free_port, running_server


async def count(on: bool, n: int, clients: int, out: Path) -> int:
    """Serve and count ``n`` invokes, ``clients`` at a time, into ``out``; the invokes counted."""
    home = Path(tempfile.mkdtemp(prefix="profile-served-"))
    port = free_port()
    config = types.SimpleNamespace(fake_shipyard=False)
    env = SPEC.on if on else SPEC.off
    target = make_target(f"guards-{'on' if on else 'off'}", port, home, config, env)
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    argv = [*valgrind, f"--callgrind-out-file={out}", *target.spec.argv]
    headers = {"Authorization": f"Bearer {target.api_key}", "Content-Type": "application/json"}

    async def invokes(total: int) -> None:
        async def client(k: int) -> None:
            for _ in range(k):
                status, body = await fetch(HOST, port, "POST", PATH, headers, BODY)
                if status != 200:
                    raise SystemExit(f"POST {PATH} -> {status}: {body[:300]!r}")

        await asyncio.gather(*(client(total // clients) for _ in range(clients)))

    spec = dataclasses.replace(target.spec, argv=argv)
    async with running_server(spec, port, home, startup_timeout=600.0) as server:
        await invokes(40)
        _instrument(server.pid, True)
        await invokes(n)
        _instrument(server.pid, False)
    return n // clients * clients


def _instrument(pid: int, on: bool) -> None:
    state = "on" if on else "off"
    subprocess.run(["callgrind_control", "-i", state, str(pid)], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("guards", choices=("on", "off"))
    parser.add_argument("-n", type=int, default=300, help="invokes counted")
    parser.add_argument("-c", type=int, default=4, help="clients at a time")
    parser.add_argument("--out", type=Path, help="keep the callgrind file here")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="callgrind-")) / "callgrind.out"
    counted = asyncio.run(count(args.guards == "on", args.n, args.c, out))
    totals = next(line for line in out.read_text().splitlines() if line.startswith("totals:"))
    per_invoke = int(totals.split()[1]) / counted
    print(f"guards {args.guards}: {per_invoke / 1e6:.2f} M instructions per invoke ({out})")


if __name__ == "__main__":
    main()
