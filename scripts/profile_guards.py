"""Where a guarded run's CPU goes, on short texts, without trusting wall time.

    python scripts/profile_guards.py runs --on -n 200        # runs with the bench's policy
    python scripts/profile_guards.py runs -n 200              # the same runs without guards
    python scripts/profile_guards.py detectors -n 200         # each detector on short texts
    python scripts/profile_guards.py detectors -n 200 --profile   # cProfile, top functions

On a loaded machine, count instructions instead of timing:

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=OUT \
        python scripts/profile_guards.py runs --on -n 100 --callgrind

instruments only the measured loop (``callgrind_control -i on`` around it, so the imports run
at valgrind's uninstrumented speed); the ``summary:`` line of OUT divided by ``-n`` is the
instruction count per run (docs/guards.md, "Cost and the fast path").
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.guards import POLICY
from shipyard import Agent, GuardPolicy
from shipyard.guard import registry
from shipyard.runtime.egress import ToolEgress
from shipyard.testing import ScriptedModel, run_agent

SHORT = (
    "hello",
    "echo: hello",
    "Sure! Your order #4471 ships on Monday; you will get a tracking link by mail.",
    "The build failed because the migration 0042 adds a NOT NULL column without a default. "
    "Add a default or backfill the rows first, then rerun `make test`.",
    "Here is a summary of the meeting: we agreed to move the launch to next week, the docs "
    "team will update the changelog, and support will draft the announcement.",
)
"""What short inputs and answers look like: a greeting, the bench's echo, chat answers."""


def _callgrind(on: bool) -> None:
    """Turn valgrind's instrumentation on or off for this process (``--callgrind``)."""
    state = "on" if on else "off"
    subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], check=True)


def detectors(n: int, count: bool = False, only: str | None = None) -> None:
    names = (only,) if only else ("injection", "pii", "secrets")
    found = {name: registry.detector(name) for name in names}
    for detector in found.values():
        detector.scan("warm up")  # loaded before counting starts
    if count:
        _callgrind(True)
    for _ in range(n):
        for detector in found.values():
            for text in SHORT:
                detector.scan(text)
    if count:
        _callgrind(False)


def runs(n: int, on: bool, count: bool = False) -> None:
    policy = GuardPolicy.model_validate_json(POLICY) if on else GuardPolicy()
    agent = Agent(name="echo", model=ScriptedModel(echo=True), guards=policy)

    async def loop() -> None:
        egress = ToolEgress()  # one for all runs: making its TLS context costs more than a run
        try:
            await run_agent(agent, "hello", egress=egress)  # one-time work (imports, loading)
            if count:
                _callgrind(True)
            for _ in range(n):
                await run_agent(agent, "hello", egress=egress)
            if count:
                _callgrind(False)
        finally:
            await egress.aclose()

    asyncio.run(loop())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("runs", "detectors"))
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--on", action="store_true", help="runs: with the bench's guard policy")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    parser.add_argument("--top", default=25, help="how many (a number) or which (a regex)")
    parser.add_argument(
        "--callgrind", action="store_true", help="under valgrind: instrument the loop only"
    )
    parser.add_argument("--only", help="detectors: this one alone (injection, pii, secrets)")
    args = parser.parse_args()
    if args.what == "detectors":
        work = lambda: detectors(args.n, args.callgrind, args.only)  # noqa: E731
    else:
        work = lambda: runs(args.n, args.on, args.callgrind)  # noqa: E731
    if not args.profile:
        work()
        return
    profile = cProfile.Profile()
    profile.runcall(work)
    args.top = int(args.top) if str(args.top).isdigit() else args.top
    stats = pstats.Stats(profile)
    stats.sort_stats("cumulative").print_stats(args.top)
    print(json.dumps({"calls": stats.total_calls}))  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
