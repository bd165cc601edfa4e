"""``shipyard serve --workers N``: N processes answer on one port and stop together."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.servers import ROOT, SHIPYARD, ServerProcess, free_port

ADMIN_KEY = "sk_shp_test_admin_" + os.urandom(8).hex()


def served_by(url: str) -> int:
    """The pid of the server process that ran one invocation (a new connection each)."""
    reply = httpx.post(
        f"{url}/v1/agents/pid/invoke",
        json={"input": "?"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "Connection": "close"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    return int(reply.json()["output"])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start(
    home: Path, port: int, workers: int, *, capture: bool = False, **env: str
) -> subprocess.Popen[bytes]:
    server = ServerProcess(home=home, app="tests.e2e.pid_app:app", admin_key=ADMIN_KEY, port=port)
    return subprocess.Popen(
        [SHIPYARD, "serve", "--app", "tests.e2e.pid_app:app", "--port", str(port),
         "--workers", str(workers)],
        env={**server.env, **env}, cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if capture else subprocess.DEVNULL,
    )  # fmt: skip


def test_two_processes_answer_on_one_port_and_stop_cleanly(tmp_path: Path) -> None:
    port = free_port()
    proc = start(tmp_path, port, 2)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # each child builds the app: slow on a busy machine
        while True:
            assert proc.poll() is None, "the server exited"
            try:
                if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "no answer within 120 s"
            time.sleep(0.2)
        pids: set[int] = set()
        with ThreadPoolExecutor(8) as pool:
            deadline = time.monotonic() + 120  # the second child may still be starting
            while len(pids) < 2 and time.monotonic() < deadline:
                pids |= set(pool.map(lambda _: served_by(url), range(16)))  # new connections
                time.sleep(0.5)
        assert len(pids) == 2, pids
        assert proc.pid not in pids  # the parent supervises; the children serve
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not any(alive(pid) for pid in pids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_in_memory_store_is_refused_with_several_workers(tmp_path: Path) -> None:
    proc = start(tmp_path, free_port(), 2, capture=True, SHIPYARD_STATE_URL="sqlite://")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert b"SHIPYARD_STATE_URL keeps its data in memory" in err
