"""A task's outcome reaches the results exchange even when the worker that stored it died before
publishing it, and when the API cancelled the task while it was queued — as the same event each
time, for subscribers to deduplicate. On the real services (SQLite records, embedded broker, a
worker in this process)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

from shipyard.runtime.tasks import TASK_QUEUE, _message
from shipyard.runtime.worker import Worker
from shipyard.stores.broker.base import ResultEvent
from shipyard.telemetry.tracecontext import TraceParent
from tests.runtime.test_retention import running, services_in


async def next_event(events: AsyncIterator[ResultEvent]) -> dict[str, object]:
    event = await asyncio.wait_for(anext(events), 10)
    decoded: dict[str, object] = json.loads(event.event)
    return decoded


async def test_a_finished_task_delivered_again_publishes_the_same_outcome(tmp_path: Path) -> None:
    async with (
        services_in(tmp_path) as services,
        services.broker.subscribe_results("#") as events,
        running(Worker(services, concurrency=2)),
    ):
        task, _ = await services.tasks.submit("acme", agent="echo", input="hi", metadata={})
        first = await next_event(events)
        assert first["type"] == "dev.shipyard.task.succeeded"
        assert first["subject"] == task.id

        # the message comes back, as after a worker stored the outcome and died before the ack
        await services.broker.publish(_message(task, TraceParent.new(), None), queue=TASK_QUEUE)
        again = await next_event(events)
        stored = await services.records.task_transitions("acme", task.id)
    assert again == first  # the same event: same id, same time, same data
    assert [m.status for m in stored] == ["queued", "running", "succeeded"]  # ran once


async def test_a_task_cancelled_while_queued_publishes_its_outcome(tmp_path: Path) -> None:
    async with services_in(tmp_path) as services:
        task, _ = await services.tasks.submit("acme", agent="echo", input="hi", metadata={})
        cancelled = await services.tasks.cancel("acme", task.id)
        assert cancelled.status == "cancelled"
        async with (
            services.broker.subscribe_results("#") as events,
            running(Worker(services, concurrency=2)),
        ):
            outcome = await next_event(events)
    assert outcome["type"] == "dev.shipyard.task.cancelled"
    assert outcome["subject"] == task.id
    data = outcome["data"]
    assert isinstance(data, dict) and data["status"] == "cancelled" and data["run_id"] is None
