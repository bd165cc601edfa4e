"""Instructions per served invoke (or task submission) under callgrind, counting only N
requests (on a shared machine, time says little; instruction counts say more, though the
server's timers — batched commits, the audit flush — make them vary by a few percent from run
to run: repeat and compare means).

    python scripts/profile_served.py on -n 300        # the guards bench's policy
    python scripts/profile_served.py off -n 300       # no guards
    python scripts/profile_served.py default -n 300   # as `make run` starts it (bench target)
    python scripts/profile_served.py off --set SHIPYARD_AUDIT=false   # any settings on top
    python scripts/profile_served.py default --path tasks   # `POST /v1/tasks` (no worker)
    python scripts/profile_served.py default --repo ../base   # another checkout's server

``off`` is the guards bench's (no guards, as shipped otherwise); the invoke bench's ``off`` is
``default`` with ``SHIPYARD_LOG_EVENTS``, ``SHIPYARD_METRICS`` and ``SHIPYARD_TRACING`` false.

Starts ``shipyard serve`` (the bench's app and settings) under
``valgrind --tool=callgrind --instr-atstart=no``, sends 40 invokes uncounted, turns the
instrumentation on (``callgrind_control -i on``), sends ``-n`` invokes from ``-c`` clients,
turns it off, stops the server and prints the instructions per invoke. With ``--path tasks``
the requests are the tasks bench's submissions (the embedded broker unless ``--set
SHIPYARD_BROKER_URL=...``; the tasks only queue: no worker runs). ``--out`` keeps the
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

from bench import taskstack
from bench.guards import SPEC
from bench.invoke import BODY, PATH, SHIPYARD_TARGETS, make_target
from bench.loadgen import fetch
from bench.servers import HOST, free_port, running_server


def settings(what: str, extra: list[str]) -> dict[str, str]:
    """The server's settings: the guards bench's ``on``/``off``, or an invoke bench target
    (``default``, ``json``, ``postgres``...), with ``KEY=VALUE`` pairs on top."""
    env = SPEC.on if what == "on" else SPEC.off if what == "off" else SHIPYARD_TARGETS[what]
    return {**env, **dict(pair.split("=", 1) for pair in extra)}


# what is served: (path, body, the answer's status)
REQUESTS = {"invoke": (PATH, BODY, 200), "tasks": (taskstack.PATH, taskstack.BODY, 202)}


async def count(
    env: dict[str, str], n: int, clients: int, out: Path, what: str, repo: Path | None = None
) -> int:
    """Serve and count ``n`` requests (``REQUESTS[what]``), ``clients`` at a time, into
    ``out``; the requests counted."""
    path, body, expected = REQUESTS[what]
    home = Path(tempfile.mkdtemp(prefix="profile-served-"))
    port = free_port()
    config = types.SimpleNamespace(fake_shipyard=False)
    target = make_target("profiled", port, home, config, env)
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    serve = target.spec.argv
    if repo is not None:  # another checkout's server (its .venv), for a baseline
        serve = [str(repo / ".venv" / "bin" / "shipyard"), *serve[1:]]
    argv = [*valgrind, f"--callgrind-out-file={out}", *serve]
    headers = {"Authorization": f"Bearer {target.api_key}", "Content-Type": "application/json"}

    async def invokes(total: int) -> None:
        async def client(k: int) -> None:
            for _ in range(k):
                status, answer = await fetch(HOST, port, "POST", path, headers, body)
                if status != expected:
                    raise SystemExit(f"POST {path} -> {status}: {answer[:300]!r}")

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
    parser.add_argument("what", choices=("on", "off", *SHIPYARD_TARGETS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--path", choices=tuple(REQUESTS), default="invoke")
    parser.add_argument("--repo", type=Path, help="serve another checkout (its .venv): a baseline")
    parser.add_argument("-n", type=int, default=300, help="requests counted")
    parser.add_argument("-c", type=int, default=4, help="clients at a time")
    parser.add_argument("--out", type=Path, help="keep the callgrind file here")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="callgrind-")) / "callgrind.out"
    env = settings(args.what, args.set)
    counted = asyncio.run(count(env, args.n, args.c, out, args.path, args.repo))
    totals = next(line for line in out.read_text().splitlines() if line.startswith("totals:"))
    per_invoke = int(totals.split()[1]) / counted
    label = " ".join([args.what, *args.set])
    print(f"{label}: {per_invoke / 1e6:.2f} M instructions per {args.path} request ({out})")


if __name__ == "__main__":
    main()
