"""Where a guarded run's CPU goes, on short texts, without trusting wall time.

    python scripts/profile_guards.py runs --on -n 200        # runs with the bench's policy
    python scripts/profile_guards.py runs -n 200              # the same runs without guards
    python scripts/profile_guards.py detectors -n 200         # each detector on short texts
    python scripts/profile_guards.py detectors -n 200 --profile   # cProfile, top functions

On a loaded machine, count instructions instead of timing: run each under
``valgrind --tool=callgrind --callgrind-out-file=OUT`` with ``-n N`` and ``-n 0`` and divide the
difference of the ``summary:`` lines of OUT by N (docs/guards.md, "Cost").
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
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


def detectors(n: int) -> None:
    found = {name: registry.detector(name) for name in ("injection", "pii", "secrets")}
    for _ in range(n):
        for detector in found.values():
            for text in SHORT:
                detector.scan(text)


def runs(n: int, on: bool) -> None:
    policy = GuardPolicy.model_validate_json(POLICY) if on else GuardPolicy()
    agent = Agent(name="echo", model=ScriptedModel(echo=True), guards=policy)
    if on:  # the detectors load before counting starts
        for name in ("injection", "pii", "secrets"):
            registry.detector(name).scan("warm up")

    async def loop() -> None:
        egress = ToolEgress()  # one for all runs: making its TLS context costs more than a run
        try:
            for _ in range(n):
                await run_agent(agent, "hello", egress=egress)
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
    args = parser.parse_args()
    if args.what == "detectors":  # load them before counting starts
        for name in ("injection", "pii", "secrets"):
            registry.detector(name).scan("warm up")
    work = (
        (lambda: detectors(args.n)) if args.what == "detectors" else (lambda: runs(args.n, args.on))
    )
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
