"""The Makefile's environment build, read with ``make -n`` (nothing is run or installed).

Each case runs make with a PATH holding only the interpreters the case needs, named as the
Makefile looks for them: a real one (this test's interpreter, 3.11 or newer) or an old one (a
script that fails the version check, as Python 3.10 would).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import ROOT

MAKE = shutil.which("make")
OLD_PYTHON = "#!/bin/sh\nexit 1\n"  # `python -c 'sys.exit(version < (3, 11))'` fails, as 3.10's


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    return folder


def _add(bin_dir: Path, name: str, script: str | None = None) -> None:
    path = bin_dir / name
    if script is None:
        path.symlink_to(sys.executable)
    else:
        path.write_text(script)
        path.chmod(0o755)


def _make_n(bin_dir: Path, target: str, venv: Path) -> subprocess.CompletedProcess[str]:
    assert MAKE is not None, "make is not installed"
    return subprocess.run(
        [MAKE, "-n", "-C", str(ROOT), f"VENV={venv}", target],
        env={"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/")},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_first_python_311_or_newer_on_path_builds_the_environment(
    bin_dir: Path, tmp_path: Path
) -> None:
    _add(bin_dir, "python3.12")
    _add(bin_dir, "python3", OLD_PYTHON)

    done = _make_n(bin_dir, "run", tmp_path / "venv")

    assert done.returncode == 0, done.stderr
    assert f"python3.12 -m venv {tmp_path / 'venv'}" in done.stdout
    assert "python3.11" not in done.stdout


def test_without_a_python_311_or_newer_make_says_so(bin_dir: Path, tmp_path: Path) -> None:
    _add(bin_dir, "python3", OLD_PYTHON)

    done = _make_n(bin_dir, "run", tmp_path / "venv")

    assert done.returncode == 2
    assert "no Python 3.11 or newer found (tried python3.13 python3.12 python3.11 python3)" in (
        done.stderr
    )


def test_run_syncs_without_the_development_tools_and_test_with_them(
    bin_dir: Path, tmp_path: Path
) -> None:
    _add(bin_dir, "python3")

    run = _make_n(bin_dir, "run", tmp_path / "venv")
    test = _make_n(bin_dir, "test", tmp_path / "venv")

    assert run.returncode == 0 and test.returncode == 0, run.stderr + test.stderr
    run_syncs = [line for line in run.stdout.splitlines() if " sync " in line]
    test_syncs = [line for line in test.stdout.splitlines() if " sync " in line]
    assert len(run_syncs) == 1 and "--no-dev" in run_syncs[0] and "--inexact" in run_syncs[0]
    assert len(test_syncs) == 1 and "--no-dev" not in test_syncs[0]
    assert "--inexact" in test_syncs[0]  # neither sync removes what the other installed
