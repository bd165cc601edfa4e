"""The harness end to end (`python -m bench`), and what it starts servers with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.common import BenchConfig, plan_pinning
from bench.invoke import make_target
from bench.servers import REPO_ROOT, server_env

SHORT = ["--duration", "0.3", "--warmup", "0.1", "--concurrency", "1"]


def _bench(tmp_path: Path, *args: str) -> tuple[str, dict[str, Any]]:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--json", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout, json.loads(out.read_text())


def test_a_server_that_answers_without_recording_is_invalid(tmp_path: Path) -> None:
    # --fake-shipyard runs the bare app (which records nothing) as the Shipyard targets.
    stdout, doc = _bench(
        tmp_path, "--only", "invoke", "--fake-shipyard", "--targets", "default,off,bare", *SHORT
    )
    rows = {r["target"]: r for r in doc["results"]["invoke"]["rows"]}
    assert rows["default"]["check"] == "INVALID"
    assert rows["default"]["recorded"] == 0
    assert rows["off"]["check"] == "INVALID"
    assert rows["bare"]["check"] == "-"
    assert rows["default"]["cpu_x_bare"] is not None
    assert "INVALID default c=1: only 0 runs succeeded in the records" in stdout
    assert "target as shipped <= 0.33 ms server CPU per recorded run at c=1: MISS (invalid" in (
        stdout
    )
    assert "pinned" in doc["config"]["pinning"]


def test_shipyard_rows_are_checked_against_its_records(tmp_path: Path) -> None:
    stdout, doc = _bench(tmp_path, "--only", "invoke", "--targets", "off,bare", *SHORT)
    [off] = [r for r in doc["results"]["invoke"]["rows"] if r["target"] == "off"]
    assert off["check"] == "ok", stdout
    assert off["recorded"] >= off["answered"] >= off["runs"] > 0


def test_the_default_target_sets_nothing_make_run_does_not(tmp_path: Path) -> None:
    target = make_target("default", 8123, tmp_path, BenchConfig())
    assert set(target.spec.env) == {"SHIPYARD_HOME", "SHIPYARD_ADMIN_KEY"}
    assert make_target("json", 8123, tmp_path, BenchConfig()).spec.env["SHIPYARD_LOG_FORMAT"] == (
        "json"
    )
    off = make_target("off", 8123, tmp_path, BenchConfig()).spec.env
    assert {off[k] for k in ("SHIPYARD_LOG_EVENTS", "SHIPYARD_METRICS", "SHIPYARD_TRACING")} == {
        "false"
    }


def test_servers_do_not_inherit_the_callers_shipyard_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHIPYARD_LOG_LEVEL", "warning")
    env = server_env({"SHIPYARD_HOME": "/tmp/x"})
    assert "SHIPYARD_LOG_LEVEL" not in env
    assert env["SHIPYARD_HOME"] == "/tmp/x"


def test_pinning_needs_two_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    assert plan_pinning(False).server is None
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    one = plan_pinning()
    assert one.server is None and one.note.startswith("not pinned: 1 CPU")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2, 5, 7})
    two = plan_pinning()
    assert (two.server, two.load) == ({2}, {5})
    assert two.note.startswith("pinned: server (its whole process session) on CPU 2")


async def test_a_server_runs_pinned_to_its_cpus(tmp_path: Path) -> None:
    from bench.invoke import _uvicorn_bare
    from bench.servers import ServerSpec, free_port, running_server

    cpu = min(os.sched_getaffinity(0))
    port = free_port()
    spec = ServerSpec("bare", _uvicorn_bare(port))
    async with running_server(spec, port, tmp_path, 60.0, frozenset({cpu})) as server:
        threads = [int(tid) for tid in os.listdir(f"/proc/{server.pid}/task")]
        assert threads
        # Every thread, not only the first (uvicorn's have started by now).
        assert {tid: os.sched_getaffinity(tid) for tid in threads} == {t: {cpu} for t in threads}
