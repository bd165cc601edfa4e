"""Fuzz the whole OpenAPI document with schemathesis against a real server process on
PostgreSQL records, with the admin key, a tenant's ``invoke,read`` key and a ``read`` key.

The checks: ``not_a_server_error`` (no 5xx) and ``status_code_conformance`` (every status
answered is documented). ``make fuzz`` runs it at length; ``tests/e2e/test_fuzz.py`` runs a
bounded version. Usage: ``python -m tests.e2e.fuzz [--max-examples N] [--phases ...]``.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from tests.conftest import POSTGRES_ADMIN_URL, admin_sql
from tests.servers import ROOT, ServerProcess, WorkerProcess

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
CHECKS = "not_a_server_error,status_code_conformance"


def schemathesis(server: ServerProcess, key: str, *, max_examples: int, phases: str) -> int:
    """One schemathesis run with ``key``; its exit code (0: nothing found). One worker: with
    several threads, hypothesis's lambda parsing fails now and then on Python 3.11 ("AST
    constructor recursion depth mismatch"), an error of the tool's, not of the API."""
    command = [
        SCHEMATHESIS, "--config-file", str(CONFIG), "run", f"{server.url}/openapi.json",
        "--checks", CHECKS, "--header", f"Authorization: Bearer {key}",
        "--max-examples", str(max_examples), "--phases", phases,
        "--request-timeout", "20", "--workers", "1", "--no-color",
        "--generation-database", "none", "--warnings", "off",
    ]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, check=False).returncode


def fuzz(*, max_examples: int, phases: str) -> int:
    """The runs, one per key, against a fresh database; how many found something."""
    database = f"shipyard_fuzz_{secrets.token_hex(4)}"
    asyncio.run(admin_sql(f'CREATE DATABASE "{database}"'))
    home = Path(tempfile.mkdtemp(prefix="shipyard-fuzz-"))
    server = ServerProcess(
        home=home,
        app="tests.e2e.fuzz_app:app",
        env_extra={
            "SHIPYARD_DATABASE_URL": f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{database}",
            "SHIPYARD_RUN_TIMEOUT_S": "5",
        },
    )
    worker = WorkerProcess(server, concurrency=8)
    try:
        server.start()
        worker.start()  # tasks end, and so do their event streams
        keys = {"admin": str(server.admin_key)}
        for scopes in ("invoke,read", "read"):
            made = server.cli("keys", "create", "--tenant", "fuzz", "--scopes", scopes)
            keys[f"tenant {scopes}"] = made.stdout.strip()
        failed = 0
        for name, key in keys.items():
            print(f"==> schemathesis with the {name} key", flush=True)
            failed += schemathesis(server, key, max_examples=max_examples, phases=phases) != 0
            print(f"==> made with the {name} key: {_made(server, key)}", flush=True)
        return failed
    finally:
        worker.stop()
        log = server.stop()
        (home / "server.log").write_text(log)
        print(f"(the server's log: {home / 'server.log'})")
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def _made(server: ServerProcess, key: str) -> dict[str, int | str]:
    """How many runs, tasks and sessions the fuzzing made (up to 500 each): proof that the
    generated requests got past validation too. A refusal is shown as its status and code (the
    fuzzer may have set the tenant's own rate limits, so that 429 is the right answer)."""
    headers = {"Authorization": f"Bearer {key}"}
    counts: dict[str, int | str] = {}
    for kind in ("runs", "tasks", "sessions"):
        reply = httpx.get(f"{server.url}/v1/{kind}", params={"limit": 500}, headers=headers)
        if reply.status_code == 200:
            counts[kind] = len(reply.json()[kind])
        else:
            counts[kind] = f"{reply.status_code} {reply.json().get('error', {}).get('code')}"
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--max-examples", type=int, default=200)
    parser.add_argument("--phases", default="examples,coverage,fuzzing,stateful")
    args = parser.parse_args()
    sys.exit(1 if fuzz(max_examples=args.max_examples, phases=args.phases) else 0)


if __name__ == "__main__":
    main()
