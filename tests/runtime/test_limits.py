"""The limits' run hook on the worker's side, with a worker in this process on the embedded
stores: a task refused by its tenant's cap on runs in flight is retried, not failed, and runs
once a slot is free; a child run goes in its parent's slot rather than waiting for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import shipyard
from shipyard import RunContext, agent
from shipyard.agents.context import RunRequest
from shipyard.agents.delegate import call_agent
from shipyard.config import load_settings
from shipyard.errors import TooManyRuns
from shipyard.runtime.services import Services
from shipyard.runtime.worker import Worker
from tests.runtime.test_retention import running
from tests.runtime.test_task_handover import started, until

gate = asyncio.Event()
entered = asyncio.Event()


@agent("gated")
async def gated(ctx: RunContext, input: object) -> str:
    entered.set()
    await gate.wait()
    return "through"


@agent("parent")
async def parent(ctx: RunContext, input: object) -> str:
    """Calls another agent from inside its run (a child run)."""
    return f"child said {await call_agent('echo', 'from the parent')}"


STORES: list[Services] = []


@agent("outage")
async def outage(ctx: RunContext, input: object) -> str:
    """The state store goes away while this run holds its slot."""
    await STORES[0].state.close()
    return "done anyway"


APP = shipyard.App(
    agents=[gated, parent, outage, shipyard.Agent(name="echo", model="scripted:echo")]
)


@pytest.fixture
async def capped(tmp_path: Path) -> AsyncIterator[Services]:
    settings = load_settings(home=tmp_path, log_events=False, limit_concurrent_runs=1)
    async with started(settings, APP) as services:
        yield services


async def test_a_task_over_the_cap_is_retried_until_a_slot_is_free(capped: Services) -> None:
    services = capped
    gate.clear()
    entered.clear()
    holding = asyncio.create_task(
        services.invoker.invoke(RunRequest(tenant_id="default", agent="gated", input="x"))
    )
    await asyncio.wait_for(entered.wait(), 30)
    with pytest.raises(TooManyRuns):  # the tenant's one slot is taken
        await services.invoker.invoke(RunRequest(tenant_id="default", agent="echo", input="y"))
    task, _ = await services.tasks.submit("default", agent="echo", input="later", metadata={})

    async def refused() -> bool:
        moves = await services.records.task_transitions("default", task.id)
        waits = [m.detail["retry_in_s"] for m in moves if m.detail.get("error") == "too_many_runs"]
        assert all(wait >= 1 for wait in waits)  # the cap's Retry-After, not the 0.05 s backoff
        return bool(waits)

    async with running(Worker(services, retry_base_s=0.05, max_attempts=50)):
        await until(refused)
        gate.set()
        await holding

        async def done() -> bool:
            return (await services.tasks.get("default", task.id)).status == "succeeded"

        await until(done)
    finished = await services.tasks.get("default", task.id)
    assert finished.output == "echo: later" and finished.attempts >= 2


async def test_a_child_run_goes_in_its_parents_slot(capped: Services) -> None:
    outcome = await capped.invoker.invoke(
        RunRequest(tenant_id="default", agent="parent", input="go")
    )
    assert outcome.output == "child said echo: from the parent"  # not refused by the cap of 1


async def test_a_store_lost_after_the_run_does_not_fail_it(capped: Services) -> None:
    STORES[:] = [capped]
    outcome = await capped.invoker.invoke(
        RunRequest(tenant_id="default", agent="outage", input="go")
    )
    assert outcome.output == "done anyway"  # the slot's release failed, and was only logged
