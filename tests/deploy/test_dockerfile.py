"""The Dockerfile: hadolint finds nothing, and the image is what docs/deploy.md promises —
multi-stage, locked dependencies, a base pinned by digest, a non-root user, a read-only-root
friendly home on a volume, a health check on the real health route, one image for every command."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from shipyard.api.routes.health import router as health_router
from tests.deploy.tools import ROOT, run, tool

DOCKERFILE = ROOT / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def cli_commands() -> set[str]:
    """The ``shipyard`` subcommands, as the command line parses them."""
    import typer

    from shipyard.cli import cli

    group = typer.main.get_command(cli)
    return set(getattr(group, "commands", {}))


def hadolint(path: Path) -> list[dict[str, str]]:
    done = run([tool("hadolint"), "--no-color", "--format", "json", str(path)])
    assert done.stderr == "", done.stderr
    findings: list[dict[str, str]] = json.loads(done.stdout or "[]")
    return findings


def test_hadolint_finds_nothing() -> None:
    assert hadolint(DOCKERFILE) == []


def test_hadolint_does_find_what_the_dockerfile_avoids(tmp_path: Path) -> None:
    """The same linter on a careless Dockerfile: a tag instead of a digest is not enough for it,
    but an unpinned pip install, a missing cache flag and a root user are."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.12-slim\nRUN pip install uv\nUSER root\nCMD shipyard serve\n")
    codes = {finding["code"] for finding in hadolint(bad)}
    assert {"DL3013", "DL3042", "DL3002", "DL3025"} <= codes


def test_multi_stage_from_the_lock_file_on_a_base_pinned_by_digest() -> None:
    steps = instructions(DOCKERFILE.read_text())
    stages = [rest.split() for word, rest in steps if word == "FROM"]
    assert [stage[1:] for stage in stages] == [["AS", "build"], ["AS", "runtime"]]
    (image,) = {stage[0] for stage in stages}  # both stages on the same base
    assert re.fullmatch(r"python:3\.1[1-9]-slim-\w+@sha256:[0-9a-f]{64}", image), image
    runs = [rest for word, rest in steps if word == "RUN"]
    assert any("uv sync --frozen --no-dev --no-install-project" in cmd for cmd in runs)
    assert any("uv sync --frozen --no-dev --no-editable" in cmd for cmd in runs)
    makefile_uv = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert makefile_uv and any(f"uv=={makefile_uv.group(1)}" in cmd for cmd in runs)


def test_runs_as_a_numeric_non_root_user_with_its_home_on_a_volume() -> None:
    steps = instructions(DOCKERFILE.read_text())
    runtime = steps[[i for i, (word, _) in enumerate(steps) if word == "FROM"][-1] :]
    user = [rest for word, rest in runtime if word == "USER"]
    assert user == ["10001:10001"]
    env = " ".join(rest for word, rest in runtime if word == "ENV")
    assert "SHIPYARD_HOME=/var/lib/shipyard" in env
    assert ("VOLUME", '["/var/lib/shipyard"]') in runtime
    # the home is created for that user; nothing else is written at run time
    assert any("install -d -o 10001 -g 10001" in rest for word, rest in runtime if word == "RUN")
    assert "PYTHONDONTWRITEBYTECODE=1" in env


def test_one_image_for_server_worker_and_migrations() -> None:
    steps = dict(instructions(DOCKERFILE.read_text()))
    assert json.loads(steps["ENTRYPOINT"]) == ["shipyard"]
    assert json.loads(steps["CMD"]) == ["serve"]
    assert {"serve", "worker", "migrate"} <= cli_commands()


def test_the_health_check_asks_the_real_liveness_route() -> None:
    steps = dict(instructions(DOCKERFILE.read_text()))
    check = steps["HEALTHCHECK"]
    assert "--interval=" in check and "--timeout=" in check and "--start-period=" in check
    command = json.loads(check.split("CMD", 1)[1])
    assert command[:2] == ["python", "-c"]
    paths = {getattr(route, "path", None) for route in health_router.routes}
    assert "/healthz" in paths and "/healthz" in command[2]


@pytest.mark.parametrize("kept", ["pyproject.toml", "uv.lock", "README.md", "src/", "examples/"])
def test_the_build_context_holds_only_what_the_image_needs(kept: str) -> None:
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and ln[0] != "#"]
    assert lines[0] == "*"  # everything out (.venv, .shipyard, .git...), then these back in
    assert f"!{kept}" in lines
    copied = " ".join(rest for word, rest in instructions(DOCKERFILE.read_text()) if word == "COPY")
    assert kept.rstrip("/") in shlex.split(copied) or kept in copied
