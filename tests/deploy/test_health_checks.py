"""The health checks the deployment files run, run as written against real processes: the
image's HEALTHCHECK against ``shipyard serve``, and the worker's check (compose.yaml) and probe
(deploy/k8s) against ``shipyard worker``'s metrics port. Each passes while the process answers
and fails where nothing does."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
import yaml

from tests.deploy.k8s import one, rendered
from tests.deploy.test_dockerfile import DOCKERFILE, instructions
from tests.deploy.tools import ROOT
from tests.servers import ServerProcess, WorkerProcess, free_port

COMPOSE_METRICS_PORT = "9100"


def _check(command: list[str], env: dict[str, str]) -> int:
    """Run a CMD-form health check the way a container runtime does (python is the image's)."""
    assert command[0] == "python"
    args = [sys.executable, *command[1:]]
    return subprocess.run(args, env=env, capture_output=True, timeout=30, check=False).returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for both tests; the worker shares its settings (and its embedded stores)."""
    home = tmp_path_factory.mktemp("home")
    proc = ServerProcess(home=home, app=None).start()
    yield proc
    proc.stop()


def test_the_image_health_check_follows_the_server(server: ServerProcess) -> None:
    steps = dict(instructions(DOCKERFILE.read_text()))
    command = json.loads(steps["HEALTHCHECK"].split("CMD", 1)[1])
    assert _check(command, {"SHIPYARD_PORT": str(server.port)}) == 0
    assert _check(command, {"SHIPYARD_PORT": str(free_port())}) != 0  # nothing listens there


def test_the_worker_checks_follow_the_worker(server: ServerProcess) -> None:
    metrics_port = free_port()
    server.env_extra["SHIPYARD_METRICS_PORT"] = str(metrics_port)  # read by the worker only
    worker = WorkerProcess(server).start()
    try:
        compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
        test = compose["services"]["worker"]["healthcheck"]["test"]
        assert test[0] == "CMD" and COMPOSE_METRICS_PORT in test[-1]
        command = [part.replace(COMPOSE_METRICS_PORT, str(metrics_port)) for part in test[1:]]
        assert _check(command, {}) == 0
        deployment = one(rendered("production"), "Deployment", "shipyard-worker")
        probe = deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
        url = f"http://127.0.0.1:{metrics_port}{probe['httpGet']['path']}"
        assert httpx.get(url, timeout=5).status_code == 200
    finally:
        worker.stop()
    assert _check(command, {}) != 0
