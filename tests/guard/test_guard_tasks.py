"""A task whose input a guard blocks fails at once (input_blocked), never retried."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import shipyard
from shipyard import GuardPolicy, GuardRule
from shipyard.config import load_settings
from shipyard.runtime.services import Services
from shipyard.runtime.worker import Worker
from tests.guard.detectors import ATTACK
from tests.runtime.test_retention import running
from tests.runtime.test_task_failures import final, put_task
from tests.runtime.test_task_handover import started

STRICT = GuardPolicy(
    rules=(GuardRule(detector="test_injection", surfaces=("input",), action="block"),)
)
APP = shipyard.App(agents=[shipyard.Agent(name="strict", model="scripted:echo", guards=STRICT)])


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[Services]:
    settings = load_settings(home=tmp_path, log_events=False)
    async with started(settings, APP) as services:
        yield services


async def test_a_blocked_task_input_fails_the_task_once(embedded: Services) -> None:
    async with running(Worker(embedded)):
        blocked = await final(embedded, await put_task(embedded, ATTACK, agent="strict"))
        fine = await final(embedded, await put_task(embedded, "hello", agent="strict"))
    assert blocked.status == "failed" and blocked.attempts == 1, blocked
    assert blocked.error is not None and blocked.error["code"] == "input_blocked"
    assert ATTACK not in str(blocked.error)
    assert fine.status == "succeeded" and fine.output == "echo: hello"
