"""Stateless runs: timeouts, cancellation at shutdown, and what callers learn of failures."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import pytest

from shipyard import Agent, RunContext, agent
from shipyard.agents.context import RunRequest
from shipyard.app import App, build_services
from shipyard.config import load_settings
from shipyard.errors import RunFailure, RunTimeout
from shipyard.runtime.services import Services

NAPPING: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
"""Set when the nap of that input has begun (the shutdown test waits for its two)."""


@agent("nap")
async def nap(ctx: RunContext, input: object) -> str:
    NAPPING[str(input)].set()
    await asyncio.sleep(float(str(input)))
    return "rested"


@agent("client_timeout")
async def client_timeout(ctx: RunContext, input: object) -> str:
    raise TimeoutError("the upstream HTTP call timed out")


async def services(tmp_path: Path, **settings: object) -> Services:
    built = build_services(
        App(agents=[nap, client_timeout, Agent(name="echo", model="scripted:echo")]),
        load_settings(home=tmp_path, **settings),
    )
    await built.records.migrate()
    await built.start()
    return built


async def test_our_timeout_is_504_but_an_agents_own_timeout_is_a_failure(tmp_path: Path) -> None:
    svc = await services(tmp_path, run_timeout_s=0.2)
    try:
        with pytest.raises(RunTimeout):
            await svc.invoker.invoke(RunRequest(tenant_id="t", agent="nap", input="5"))
        with pytest.raises(RunFailure) as caught:
            await svc.invoker.invoke(RunRequest(tenant_id="t", agent="client_timeout", input="x"))
        assert not isinstance(caught.value, RunTimeout)
        assert caught.value.status == 500 and "TimeoutError" in caught.value.message
    finally:
        await svc.close()


async def test_shutdown_lets_runs_finish_and_records_the_ones_it_cancels(tmp_path: Path) -> None:
    svc = await services(tmp_path)
    quick = asyncio.create_task(
        svc.invoker.invoke(RunRequest(tenant_id="t", agent="nap", input="0.2"))
    )
    stuck = asyncio.create_task(
        svc.invoker.invoke(RunRequest(tenant_id="t", agent="nap", input="60"))
    )
    async with asyncio.timeout(30):  # both are running (a loaded machine may take a while)
        await asyncio.gather(NAPPING["0.2"].wait(), NAPPING["60"].wait())
    await svc.close(drain_s=3.0)  # the quick one ends well within it, even on a loaded machine

    assert (await quick).output == "rested"
    with pytest.raises(asyncio.CancelledError):
        await stuck

    reopened = build_services(App(), load_settings(home=tmp_path))
    try:
        runs = {r.input: r for r in (await reopened.records.list_runs("t")).items}
    finally:
        await reopened.records.close()
    assert runs["0.2"].status == "succeeded"
    assert runs["60"].status == "failed" and runs["60"].error == {
        "code": "cancelled",
        "message": "the run was cancelled",
    }
