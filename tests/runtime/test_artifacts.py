"""``ctx.artifacts`` in runs wired by the composition root: an agent's own code and a tool both
write artifacts of their run; one over ``SHIPYARD_MAX_ARTIFACT_BYTES`` leaves neither a record
nor a blob."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shipyard import Agent, RunContext, agent, tool
from shipyard.agents.context import RunRequest
from shipyard.app import App, build_services
from shipyard.config import load_settings
from shipyard.errors import StoreError
from shipyard.models.scripted import ScriptedModel
from shipyard.runtime.services import Services

TENANT = "acme"


@agent("maker")
async def maker(ctx: RunContext, input: object) -> str:
    record = await ctx.artifacts.put("notes.txt", f"notes on {input}", "text/plain")
    return record.id


@tool
async def dump(size: int, ctx: RunContext) -> str:
    """Write ``size`` bytes as an artifact.

    Args:
        size: How many bytes.
    """
    record = await ctx.artifacts.put("dump.bin", b"z" * size)
    return record.id


def dumper(size: int) -> Agent:
    calls = [{"tool_calls": [{"name": "dump", "arguments": {"size": size}}]}, "done"]
    return Agent(name="dumper", model=ScriptedModel(calls), tools=[dump])


@pytest.fixture
async def started(tmp_path: Path) -> AsyncIterator[Any]:
    built: list[Services] = []

    async def start(*agents: Any) -> Services:
        settings = load_settings(home=tmp_path, log_events=False, max_artifact_bytes=1000)
        services = build_services(App(agents=list(agents)), settings)
        await services.records.migrate()
        await services.start()
        built.append(services)
        return services

    yield start
    for services in built:
        await services.close()


async def test_an_agent_writes_an_artifact_of_its_run(started: Any) -> None:
    services = await started(maker)
    outcome = await services.invoker.invoke(RunRequest(tenant_id=TENANT, agent="maker", input="x"))
    record = await services.records.get_artifact(TENANT, outcome.output)
    assert record is not None
    assert (record.run_id, record.name, record.size) == (outcome.run_id, "notes.txt", 10)


async def test_an_artifact_over_the_limit_leaves_nothing(started: Any, tmp_path: Path) -> None:
    services = await started(dumper(1001))
    outcome = await services.invoker.invoke(RunRequest(tenant_id=TENANT, agent="dumper", input="x"))
    page = await services.records.list_artifacts(TENANT, run_id=outcome.run_id)
    assert page.items == []
    events = await services.records.list_events(TENANT, outcome.run_id)
    [result] = [e for e in events if e.type == "tool.result"]
    assert "1000 bytes" in str(result.data)
    assert not [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]


async def test_a_record_that_cannot_be_written_leaves_no_blob(started: Any, tmp_path: Path) -> None:
    services = await started(maker)
    assert services.artifacts is not None
    with sqlite3.connect(tmp_path / "shipyard.db") as db:  # the record's write will fail
        db.execute("DROP TABLE artifacts")
    with pytest.raises(StoreError):
        await services.artifacts.put(TENANT, b"orphan?", name="o.txt")
    assert not [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
