"""``shipyard`` commands in this process (``typer``'s runner), for tests that need many.

A command configures the process's logging to the runner's captured output, which is closed
when it returns: the tests' logging (``conftest``) is put back after each one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from typer.testing import CliRunner, Result

from shipyard.cli import cli
from shipyard.telemetry.logging import configure_logging


def invoke(args: Sequence[str], env: Mapping[str, str]) -> Result:
    try:
        return CliRunner().invoke(cli, list(args), env={"SHIPYARD_LOG_LEVEL": "warning", **env})
    finally:
        configure_logging("warning")
