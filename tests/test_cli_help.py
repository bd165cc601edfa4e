"""The ``shipyard`` command's own texts: help without reST markup, ``--version``, the banner's
default-model line. In-process with typer's runner: none of these needs a server or a store."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from shipyard import __version__
from shipyard.cli import cli, default_model_line
from shipyard.config import load_settings

REST_MARKUP = re.compile(r"``|:(class|func|meth|mod|attr|data|exc|obj|ref):`")


def _command_paths(group: TyperGroup, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, TyperGroup):
            paths += _command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


COMMANDS = _command_paths(typer.main.get_group(cli))


def test_every_command_is_covered() -> None:
    assert {" ".join(path) for path in COMMANDS} >= {
        "", "serve", "worker", "migrate", "invoke", "keys", "keys create", "keys list",
        "keys revoke",
    }  # fmt: skip


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "shipyard")
def test_help_shows_no_rest_markup(path: tuple[str, ...]) -> None:
    done = CliRunner().invoke(cli, [*path, "--help"], prog_name="shipyard", terminal_width=100)

    assert done.exit_code == 0, done.output
    assert "Usage: shipyard" in done.output
    assert not REST_MARKUP.search(done.output), done.output


def test_version_prints_the_package_version() -> None:
    done = CliRunner().invoke(cli, ["--version"])

    assert done.exit_code == 0
    assert done.output == f"shipyard {__version__}\n"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in list(__import__("os").environ):
        if name.startswith("SHIPYARD_") or name == "OPENAI_API_KEY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_the_banner_names_the_default_model_and_how_to_change_it(
    clean_env: pytest.MonkeyPatch,
) -> None:
    assert default_model_line(load_settings()) == (
        "default model: local:smollm2 (offline, small; set SHIPYARD_MODEL or OPENAI_API_KEY)"
    )
    clean_env.setenv("OPENAI_API_KEY", "sk-test")
    assert default_model_line(load_settings()).startswith(
        "default model: openai:gpt-4.1-mini (OPENAI_API_KEY is set"
    )
    clean_env.setenv("SHIPYARD_MODEL", "scripted:echo")
    assert default_model_line(load_settings()) == "default model: scripted:echo (SHIPYARD_MODEL)"
