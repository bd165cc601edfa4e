"""Tasks that fail in ways the worker must survive, on the real stores with a worker in this
process: input the stores cannot hold, rows that cannot be read, failures nobody classified.
Whatever happens, a task ends (or its message is dead-lettered), its agent never runs again once
its run finished, and a cancel never fails for the data. The bad rows and messages are written
straight into the record store and the broker (the API refuses such input at the edge)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import shipyard
from shipyard import RunContext, agent
from shipyard.config import load_settings
from shipyard.errors import TaskFinished
from shipyard.runtime.services import Services
from shipyard.runtime.tasks import TASK_QUEUE, _message, offer_of
from shipyard.runtime.worker import Worker
from shipyard.stores.records.base import FINAL_TASK_STATES, RunRecord, TaskRecord
from shipyard.telemetry.events import new_id
from shipyard.telemetry.tracecontext import TraceParent
from shipyard.testing import ScriptedModel
from tests.runtime.test_retention import running
from tests.runtime.test_task_handover import started, until

RUNS: list[str] = []


@agent("repeat")
async def repeat(ctx: RunContext, input: object) -> str:
    """Answers with its input (whatever it holds); counts its runs."""
    RUNS.append(ctx.run_id)
    return f"got {input}"


APP = shipyard.App(
    agents=[
        repeat,
        shipyard.Agent(name="echo", model="scripted:echo"),
        shipyard.Agent(name="garbled", model=ScriptedModel([{"error": "provider says \udfff"}])),
    ]
)


async def put_task(
    services: Services,
    input: Any,
    metadata: dict[str, Any] | None = None,
    *,
    agent: str = "repeat",
) -> str:
    """A task recorded and handed to the broker without the API's checks."""
    now = datetime.now(UTC)
    task, _ = await services.records.create_task(
        TaskRecord(
            id=new_id("task"),
            tenant_id="default",
            agent=agent,
            status="queued",
            input=input,
            metadata=metadata or {},
            created_at=now,
            updated_at=now,
        )
    )
    await services.broker.publish(_message(task, TraceParent.new(), None), queue=TASK_QUEUE)
    return task.id


async def final(services: Services, task_id: str) -> TaskRecord:
    async def ended() -> bool:
        return (await services.tasks.get("default", task_id)).status in FINAL_TASK_STATES

    await until(ended, within_s=60)
    return await services.tasks.get("default", task_id)


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[Services]:
    settings = load_settings(home=tmp_path, log_events=False)
    async with started(settings, APP) as services:
        yield services


async def test_a_nul_the_store_refuses_ends_the_task_without_running_it_again(
    tmp_path: Path, postgres_url: str
) -> None:
    """PostgreSQL keeps no NUL in text: the run's output cannot be stored. The task ends
    ``failed`` (``output_unstorable``) with its run named; the agent ran once."""
    settings = load_settings(home=tmp_path, database_url=postgres_url, log_events=False)
    RUNS.clear()
    async with started(settings, APP) as services, running(Worker(services, retry_base_s=0.05)):
        async with services.broker.subscribe_results("#") as events:
            task = await final(services, await put_task(services, "a\u0000b"))
            outcome = json.loads((await asyncio.wait_for(anext(events), 10)).event)
        assert task.status == "failed" and task.error is not None
        assert task.error["code"] == "output_unstorable" and task.output is None
        assert task.attempts == 1 and [task.run_id] == RUNS
        assert outcome["data"]["run_id"] == task.run_id
        run = await services.records.get_run("default", RUNS[0])
        assert run is not None and run.task_id == task.id
        assert await services.broker.depth(TASK_QUEUE) == 0  # settled: nothing comes back


async def test_a_lone_surrogate_in_a_stored_task_neither_loops_nor_breaks_cancel(
    embedded: Services,
) -> None:
    services = embedded
    RUNS.clear()
    async with running(Worker(services, retry_base_s=0.05)):
        task = await final(services, await put_task(services, "x\ud800y", {"k": "\udfff"}))
    assert task.status in ("succeeded", "failed") and task.attempts == 1 and len(RUNS) == 1
    with pytest.raises(TaskFinished):  # a 409 that says why, not a 500
        await services.tasks.cancel("default", task.id)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """The record store: SQLite (``None``, the embedded default) or PostgreSQL."""
    return request.getfixturevalue("postgres_url") if request.param == "postgres" else None


async def test_an_answer_with_a_lone_surrogate_succeeds_with_u_fffd(
    tmp_path: Path, database_url: str | None
) -> None:
    """The agent's answer holds a lone surrogate (no character): the task succeeds with U+FFFD
    in its place — in the task, its published outcome and its run alike."""
    store = {"database_url": database_url} if database_url else {}
    settings = load_settings(home=tmp_path, log_events=False, **store)
    RUNS.clear()
    async with started(settings, APP) as services, running(Worker(services)):
        async with services.broker.subscribe_results("#") as events:
            task = await final(services, await put_task(services, "\ud800"))
            outcome = json.loads((await asyncio.wait_for(anext(events), 10)).event)
        assert task.status == "succeeded" and task.output == "got \ufffd", task
        assert outcome["data"]["output"] == task.output and task.attempts == 1
        run = await services.records.get_run("default", RUNS[0])
        assert run is not None and (run.input, run.output) == ("\ufffd", task.output)


async def test_a_model_error_with_a_lone_surrogate_is_retried_then_dead(
    embedded: Services,
) -> None:
    """A provider's error quoting a lone surrogate is a model error like any other: retried,
    then ``dead`` with U+FFFD in its message — not abandoned at once for its data."""
    async with running(Worker(embedded, max_attempts=2, retry_base_s=0.05)):
        task = await final(embedded, await put_task(embedded, "x", agent="garbled"))
    assert task.status == "dead" and task.attempts == 2 and task.error is not None, task
    assert task.error == {
        "code": "model_error",
        "message": "provider says \ufffd",
        "details": {"run_id": task.run_id, "trace_id": task.error["details"]["trace_id"]},
    }


async def test_stored_input_that_is_not_messages_fails_at_once(embedded: Services) -> None:
    services = embedded
    RUNS.clear()
    async with running(Worker(services)):
        task = await final(services, await put_task(services, [{"role": "nobody"}]))
    assert task.status == "failed" and task.error is not None
    assert task.error["code"] == "invalid_input" and task.attempts == 1 and RUNS == []
    [letter] = await services.broker.dead_letters(TASK_QUEUE)
    assert letter.message.task_id == task.id


async def test_a_row_nobody_can_read_is_retried_then_dead_lettered(
    embedded: Services, tmp_path: Path
) -> None:
    """An error the worker does not classify (here: the task's row is not JSON) is retried with
    backoff, as new deliveries, then the message goes to the dead letters; other tasks run."""
    services = embedded
    RUNS.clear()
    broken = await put_task(services, "fine until the row is damaged")
    with sqlite3.connect(tmp_path / "shipyard.db") as conn:
        conn.execute("UPDATE tasks SET input = '{not json' WHERE id = ?", (broken,))
    conn.close()
    worker = Worker(services, max_attempts=3, retry_base_s=0.05)
    async with running(worker):
        fine = await final(services, await put_task(services, "hi"))

        async def dead_lettered() -> bool:
            return bool(await services.broker.dead_letters(TASK_QUEUE))

        await until(dead_lettered, within_s=60)
    assert fine.status == "succeeded" and fine.output == "got hi"
    [letter] = await services.broker.dead_letters(TASK_QUEUE)
    assert letter.message.task_id == broken and letter.message.attempt == 3
    assert "internal_error" in letter.reason
    assert await services.broker.depth(TASK_QUEUE) == 0


async def test_a_run_that_finished_before_its_worker_died_is_not_run_again(
    embedded: Services,
) -> None:
    """The worker stored the run's record and died before the task's outcome: the worker that
    takes the message over ends the task with that run's outcome, without running the agent."""
    services = embedded
    RUNS.clear()
    now = datetime.now(UTC)
    task, _ = await services.records.create_task(
        TaskRecord(
            id=new_id("task"),
            tenant_id="default",
            agent="repeat",
            status="queued",
            input="hi",
            created_at=now,
            updated_at=now,
        )
    )
    message = _message(task, TraceParent.new(), None)
    run_id = new_id("run")
    claimed = await services.records.transition_task(  # as the worker that died claimed it
        "default",
        task.id,
        "running",
        expected=frozenset({"queued"}),
        count_attempt=True,
        offer=offer_of(message),
        detail={"worker": "gone", "run_id": run_id},
    )
    assert claimed is not None
    done = RunRecord(
        id=run_id,
        tenant_id="default",
        agent="repeat",
        status="succeeded",
        input="hi",
        output="got hi, earlier",
        prompt_tokens=3,
        task_id=task.id,
        created_at=now,
        ended_at=now,
    )
    await services.records.write_batch([done], [])
    await services.broker.publish(message, queue=TASK_QUEUE)
    async with services.broker.consume(TASK_QUEUE, prefetch=1) as deliveries:
        await asyncio.wait_for(
            anext(deliveries), 5
        )  # left unsettled: redelivered, as after a crash
    async with running(Worker(services)):
        ended = await final(services, task.id)
    assert ended.status == "succeeded" and ended.output == "got hi, earlier"
    assert ended.run_id == run_id and ended.prompt_tokens == 3 and ended.attempts == 2
    assert RUNS == []
