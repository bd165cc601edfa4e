"""Instructions per served session turn under callgrind, counting only N turns (the session
bench's turn: ``scripted:echo`` on a session that holds about 50 messages).

    python scripts/profile_turns.py sqlite -n 100                 # state in SQLite (default)
    python scripts/profile_turns.py redis -n 100                  # state on Redis
    python scripts/profile_turns.py sqlite --set SHIPYARD_AUDIT=false
    python scripts/profile_turns.py redis --repo /work/wt/base    # another checkout's server

Starts ``shipyard serve`` (the bench's app, as shipped) under
``valgrind --tool=callgrind --instr-atstart=no``, creates sessions pre-filled with 49 messages
(as the session bench does, uncounted), sends 30 turns uncounted, turns the instrumentation on,
sends ``-n`` turns one at a time (each session serves at most ``USES`` of them, so a turn's
history stays within 50..60 messages), turns it off and prints the instructions per turn.
``--repo`` runs another checkout's server (its ``.venv``), for a baseline. ``--out`` keeps the
callgrind file for ``callgrind_annotate``. Redis state goes to ``SHIPYARD_BENCH_REDIS_URL``.

The server's own timers and pollers (the embedded state store polls its channels ten times a
second while a process listens, the records commit on a timer) run whatever the turns do, and
under valgrind a turn takes ~50x its real time, so they weigh on a turn with the machine's load.
Before the turns the harness counts ``--idle`` seconds of none (same server) and prints the
turn's count less that rate times its time too: compare those across runs and checkouts.
``--cprofile FILE`` runs the server under cProfile instead (enabled over the counted turns only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REDIS_URL
from bench.loadgen import fetch
from bench.servers import HOST, ServerSpec, free_port, running_server
from bench.sessions import AGENT, PREFILL_BODY, SESSION_TTL_S, TURN_BODY

_CPROFILE = """
import cProfile, runpy, signal, sys
profile = cProfile.Profile()
def stop(*_): raise KeyboardInterrupt
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGUSR1, lambda *_: profile.enable())
signal.signal(signal.SIGUSR2, lambda *_: profile.disable())
out = sys.argv.pop(1)
sys.argv.pop(0)
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except (KeyboardInterrupt, SystemExit):
    pass
finally:
    profile.dump_stats(out)
"""
WARM_UP = 30
USES = 5  # counted turns per session


def _spec(
    repo: Path, state: str, port: int, home: Path, key: str, extra: list[str], cprofile: bool
) -> ServerSpec:
    venv = repo / ".venv" / "bin"
    serve = [
        str(venv / "shipyard"), "serve", "--app", "bench.apps:shipyard_app",
        "--host", HOST, "--port", str(port),
    ]  # fmt: skip
    if cprofile:  # uvicorn re-raises SIGTERM after its shutdown: exit as KeyboardInterrupt
        prefix = [str(venv / "python"), "-c", _CPROFILE, str(home / "cprofile.out")]
    else:
        prefix = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={home / 'callgrind.out'}",
        ]  # fmt: skip
    argv = [*prefix, *serve]
    env = {"SHIPYARD_HOME": str(home), "SHIPYARD_ADMIN_KEY": key}
    if state == "redis":
        env["SHIPYARD_STATE_URL"] = REDIS_URL
    env.update(dict(pair.split("=", 1) for pair in extra))
    return ServerSpec(f"turns-{state}", argv, env)


async def count(
    repo: Path, state: str, n: int, extra: list[str], home: Path, idle_s: float, cprofile: bool
) -> float:
    """Serve, count ``idle_s`` seconds of no turns (a callgrind dump of its own), then ``n``
    sequential turns; the seconds the turns took."""
    port, key = free_port(), "sk_bench_" + secrets.token_hex(16)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def call(path: str, body: bytes, expect: int) -> dict[str, object]:
        status, raw = await fetch(HOST, port, "POST", path, headers, body, limit_s=120.0)
        if status != expect:
            raise SystemExit(f"POST {path} -> {status}: {raw[:300]!r}")
        parsed = json.loads(raw)
        assert isinstance(parsed, dict)
        return parsed

    async def session() -> str:
        create = json.dumps({"agent": AGENT, "ttl_seconds": SESSION_TTL_S}).encode()
        sid = str((await call("/v1/sessions", create, 201))["id"])
        await call(f"/v1/sessions/{sid}/turns", PREFILL_BODY, 200)
        return sid

    async def turns(total: int) -> list[str]:
        pool = [await session() for _ in range(-(-total // USES))]
        return [sid for sid in pool for _ in range(USES)][:total]

    async def send(sequence: list[str]) -> None:
        for sid in sequence:
            answer = await call(f"/v1/sessions/{sid}/turns", TURN_BODY, 200)
            if answer.get("output") != "echo: hello":
                raise SystemExit(f"unexpected answer: {answer}")

    spec = _spec(repo, state, port, home, key, extra, cprofile)
    async with running_server(spec, port, home, startup_timeout=600.0) as server:
        await send(await turns(WARM_UP))
        sequence = await turns(n)
        if not cprofile:
            _instrument(server.pid, True, cprofile)
            await asyncio.sleep(idle_s)
            _instrument(server.pid, False, cprofile)
            _callgrind(["--dump=idle", str(server.pid)])  # then zeroed
        _instrument(server.pid, True, cprofile)
        started = time.perf_counter()
        await send(sequence)
        seconds = time.perf_counter() - started
        _instrument(server.pid, False, cprofile)
    return seconds


def _instrument(pid: int, on: bool, cprofile: bool) -> None:
    if cprofile:  # the bootstrap's handlers turn the profiler on and off
        os.kill(pid, signal.SIGUSR1 if on else signal.SIGUSR2)
        return
    _callgrind(["-i", "on" if on else "off", str(pid)])


def _callgrind(args: list[str]) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


def _total(path: Path) -> int:
    lines = path.read_text().splitlines()
    return int(next(line for line in lines if line.startswith("totals:")).split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state", choices=("sqlite", "redis"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("-n", type=int, default=100, help="turns counted")
    parser.add_argument("--idle", type=float, default=10.0, metavar="S", help="idle seconds")
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--out", type=Path, help="keep the callgrind file here")
    parser.add_argument("--cprofile", type=Path, help="run under cProfile into this file")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="profile-turns-"))
    repo = args.repo.resolve()
    run = count(repo, args.state, args.n, args.set, home, args.idle, bool(args.cprofile))
    seconds = asyncio.run(run)
    if args.cprofile:
        args.cprofile.write_bytes((home / "cprofile.out").read_bytes())
        print(f"cProfile of {args.n} turns: {args.cprofile}")
        return
    out = home / "callgrind.out"
    if args.out:
        args.out.write_bytes(out.read_bytes())
    (idle_file,) = home.glob("callgrind.out.*")
    rate = _total(idle_file) / args.idle
    per_turn, turn_s = _total(out) / args.n, seconds / args.n
    label = " ".join([args.state, *args.set, f"({repo.name})"])
    print(
        f"{label}: {per_turn / 1e6:.2f} M instructions per turn, "
        f"{(per_turn - rate * turn_s) / 1e6:.2f} M less idle "
        f"({rate / 1e6:.2f} M/s idle x {turn_s * 1000:.0f} ms a turn; {args.out or out})"
    )


if __name__ == "__main__":
    main()
