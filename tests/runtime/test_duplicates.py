"""A task's message can reach the broker twice (a second hand-over). A worker takes a running
task over only with the message that started its run, redelivered after its worker died; a
duplicate, even redelivered, never runs the task a second time (real workers, embedded broker)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import shipyard
from shipyard import RunContext, agent
from shipyard.config import load_settings
from shipyard.runtime.services import Services
from shipyard.runtime.tasks import TASK_QUEUE, _message
from shipyard.runtime.worker import Worker
from shipyard.telemetry.tracecontext import TraceParent
from tests.runtime.test_task_handover import started

STARTS: list[str] = []


@agent("slow")
async def slow(ctx: RunContext, input: object) -> str:
    STARTS.append(ctx.run_id)
    await asyncio.sleep(1.5)
    return "done"


async def test_a_redelivered_duplicate_does_not_take_a_running_task(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, log_events=False)
    async with started(settings, shipyard.App(agents=[slow])) as services:
        await _run_with_a_duplicate(services)


async def _run_with_a_duplicate(services: Services) -> None:
    first = Worker(services, concurrency=1)
    second = Worker(services, concurrency=1)
    runs = [asyncio.create_task(first.run())]
    try:
        task, _ = await services.tasks.submit("default", agent="slow", input="x", metadata={})
        for _ in range(200):  # the first worker runs it
            if (await services.tasks.get("default", task.id)).status == "running":
                break
            await asyncio.sleep(0.02)
        duplicate = _message(task, TraceParent.new(), None)  # as a second hand-over sends it
        await services.broker.publish(duplicate, queue=TASK_QUEUE)
        async with services.broker.consume(TASK_QUEUE, prefetch=1) as deliveries:
            taken = await asyncio.wait_for(anext(deliveries), 5)
            assert taken.message.task_id == task.id  # handed back unsettled: redelivered next
        runs.append(asyncio.create_task(second.run()))
        for _ in range(300):
            done = await services.tasks.get("default", task.id)
            if done.status == "succeeded":
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # the duplicate is settled meanwhile
        assert done.status == "succeeded" and len(STARTS) == 1
        moves = [t.status for t in await services.tasks.transitions("default", task.id)]
        assert moves == ["queued", "running", "succeeded"]
    finally:
        first.stop()
        second.stop()
        await asyncio.gather(*runs)
