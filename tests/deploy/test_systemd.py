"""deploy/systemd: the units pass ``systemd-analyze verify`` without a word, their sandboxing
scores at most 2.0 in ``systemd-analyze security`` (0 is the most confined, 10 not at all), and
their stop timeouts cover the processes' own graceful shutdown.

Both run against a scratch root holding the units, the system's unit files and a stand-in for
/opt/shipyard/.venv/bin/shipyard, since verify checks that each command exists."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from shipyard.config import Settings
from tests.deploy.tools import ROOT, plain_credentials, run, tool

UNITS = ROOT / "deploy" / "systemd"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
INSTANCES = ["shipyard-server.service", "shipyard-worker@1.service"]
WORKER_DRAIN_S = 30  # a stopping worker's last wait for webhook deliveries (runtime/worker.py)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scratch = tmp_path_factory.mktemp("root")
    (scratch / "usr/lib/systemd").mkdir(parents=True)
    if SYSTEM_UNITS.is_dir():
        shutil.copytree(SYSTEM_UNITS, scratch / "usr/lib/systemd/system", symlinks=True)
    (scratch / "etc/systemd/system").mkdir(parents=True)
    for unit in UNITS.glob("*.service"):
        shutil.copy(unit, scratch / "etc/systemd/system" / unit.name)
    binary = scratch / "opt/shipyard/.venv/bin/shipyard"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    return scratch


def test_the_units_verify_cleanly(root: Path) -> None:
    done = run([tool("systemd-analyze"), "verify", f"--root={root}", *INSTANCES], cwd=root)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_verify_does_speak_up_about_a_broken_unit(root: Path) -> None:
    """verify exits 0 on a misspelt key: the output is what tells, hence the empty-output check."""
    unit = root / "etc/systemd/system/broken.service"
    text = (UNITS / "shipyard-server.service").read_text()
    unit.write_text(text.replace("ProtectSystem=strict", "ProtectSytem=strict"))
    done = run([tool("systemd-analyze"), "verify", f"--root={root}", "broken.service"], cwd=root)
    assert "Unknown key 'ProtectSytem'" in done.stderr


def test_the_sandboxing_scores_ok(root: Path) -> None:
    args = [tool("systemd-analyze"), "security", "--offline=yes", f"--root={root}"]
    done = run([*args, "--threshold=20", *INSTANCES], cwd=root)
    assert done.returncode == 0, done.stdout
    scores = re.findall(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout)
    assert len(scores) == 2 and all(float(score) <= 2.0 for score in scores)


def _service(name: str) -> dict[str, str]:
    """The [Service] section; a key set several times (Environment=) has its values joined."""
    section, found = "", dict[str, str]()
    for line in (UNITS / name).read_text().splitlines():
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found[key] = f"{found[key]} {value}" if key in found else value
    return found


@pytest.mark.parametrize("name", ["shipyard-server.service", "shipyard-worker@.service"])
def test_the_units_are_sandboxed_under_a_dedicated_user(name: str) -> None:
    service = _service(name)
    assert service["User"] == "shipyard" and service["Group"] == "shipyard"
    for key, value in {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "CapabilityBoundingSet": "",
        "StateDirectory": "shipyard",
        "Restart": "on-failure",
    }.items():
        assert service[key] == value, key
    assert "SHIPYARD_HOME=/var/lib/shipyard" in service["Environment"]
    sysusers = (UNITS / "shipyard.sysusers.conf").read_text()
    assert re.search(r"^u shipyard - .* /var/lib/shipyard ", sysusers, re.M)


def test_the_server_stops_after_its_graceful_shutdown() -> None:
    """TimeoutStopSec leaves uvicorn its graceful shutdown (cli.py) and a few seconds more."""
    cli = (ROOT / "src" / "shipyard" / "cli.py").read_text()
    grace = re.search(r"timeout_graceful_shutdown\"?\s*[=:]\s*(\d+)", cli)
    assert grace, "cli.py no longer sets timeout_graceful_shutdown: check the units' TimeoutStopSec"
    stop = int(_service("shipyard-server.service")["TimeoutStopSec"])
    assert int(grace.group(1)) < stop <= int(grace.group(1)) + 10


def test_a_worker_stops_after_its_tasks_in_flight() -> None:
    stop = int(_service("shipyard-worker@.service")["TimeoutStopSec"])
    assert stop >= Settings().run_timeout_s + WORKER_DRAIN_S
    assert "worker" in _service("shipyard-worker@.service")["ExecStart"].split()


def test_the_settings_file_is_valid_and_holds_no_credential() -> None:
    lines = (UNITS / "shipyard.env").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert env["SHIPYARD_ENV"] == "production"  # which refuses a plain credential at start
    assert plain_credentials(env) == []
    assert "token_file=" in env["SHIPYARD_SECRETS_URL"]
