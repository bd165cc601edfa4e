"""Logs captured as the process writes them: configured to a buffer, read back as JSON lines."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from shipyard.telemetry.eventlog import LOGGER, Redactor, set_redactor
from shipyard.telemetry.logging import configure_logging


@dataclass
class LogBuffer:
    stream: io.StringIO = field(default_factory=io.StringIO)

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def records(self) -> list[dict[str, Any]]:
        """Every line, parsed: a line that is not JSON fails the test."""
        return [json.loads(line) for line in self.lines()]

    def events(self) -> list[dict[str, Any]]:
        """The run event records (other modules may log too, at debug)."""
        return [r for r in self.records() if r.get("logger") == LOGGER]


@pytest.fixture
def log_to() -> Iterator[Callable[..., LogBuffer]]:
    """``log_to(level, format="json")`` configures logging into a buffer; the process default
    (as ``tests/conftest.py`` sets it) comes back after the test."""

    def configure(level: str, format: str = "json") -> LogBuffer:
        buffer = LogBuffer()
        configure_logging(level, format, stream=buffer.stream)
        return buffer

    yield configure
    configure_logging("warning")


@pytest.fixture
def redactor() -> Iterator[Callable[[Redactor | None], Redactor | None]]:
    """Installs a redaction hook for the test and puts the previous one back after it."""
    previous = set_redactor(None)
    yield set_redactor
    set_redactor(previous)
