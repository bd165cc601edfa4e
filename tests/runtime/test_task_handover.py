"""The hand-over of recorded tasks to the broker (runtime/handover): the caller is answered once
the task is recorded, whatever the broker does; a task the broker refuses is handed over when it
takes messages again, by this process or, after a restart, by the next (real RabbitMQ, refusing
through a reject-publish policy on the vhost; the embedded broker where no refusal is needed)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

import shipyard
from shipyard.app import build_services
from shipyard.config import Settings, load_settings
from shipyard.runtime.handover import Handover
from shipyard.runtime.services import Services
from shipyard.runtime.tasks import TASK_QUEUE, _taken_over
from shipyard.runtime.worker import Worker
from shipyard.stores.broker.base import TaskMessage
from shipyard.stores.records.base import TaskRecord
from tests.e2e.test_tasks import rabbit_vhost

__all__ = ["rabbit_vhost"]

REJECT = '{"max-length": 0, "overflow": "reject-publish"}'
APP = shipyard.App(agents=[shipyard.Agent(name="echo", model="scripted:echo")])


def policy(vhost_url: str, *args: str) -> None:
    vhost = vhost_url.rsplit("/", 1)[1]
    done = subprocess.run(
        ["rabbitmqctl", *args[:1], "-p", vhost, *args[1:]],
        capture_output=True,
        timeout=60,
        text=True,
    )
    assert done.returncode == 0, done.stderr


async def refuse_everything(services: Services, vhost_url: str) -> None:
    # the queue exists, then refuses every message
    await services.tasks.submit("default", agent="echo", input="warm-up", metadata={})
    await until(lambda: services.tasks.handovers_in_flight == 0)
    policy(vhost_url, "set_policy", "full", ".*", REJECT, "--apply-to", "queues")
    await asyncio.sleep(1)  # policies apply asynchronously


async def until(condition: Callable[[], Awaitable[bool] | bool], within_s: float = 30.0) -> None:
    for _ in range(int(within_s / 0.02)):
        met = condition()
        if await met if inspect.isawaitable(met) else met:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {within_s} s")


async def _wait_succeeded(services: Services, task_id: str) -> TaskRecord:
    worker = Worker(services, concurrency=2)
    running = asyncio.create_task(worker.run())
    try:
        for _ in range(600):
            task = await services.tasks.get("default", task_id)
            if task.status == "succeeded":
                break
            await asyncio.sleep(0.05)
        return task
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)


@contextlib.asynccontextmanager
async def started(settings: Settings, app: shipyard.App = APP) -> AsyncIterator[Services]:
    """A process's services, as a server has them (migrated, started), closed after."""
    services = build_services(app, settings)
    await services.records.migrate()
    await services.start()
    try:
        yield services
    finally:
        await services.close()


@pytest.mark.rabbitmq
async def test_a_refused_task_is_acknowledged_and_handed_over_when_the_broker_takes_it(
    tmp_path: Path, rabbit_vhost: str
) -> None:
    settings = load_settings(home=tmp_path, broker_url=rabbit_vhost, log_events=False)
    async with started(settings) as services:
        await refuse_everything(services, rabbit_vhost)
        refused, created = await services.tasks.submit(
            "default", agent="echo", input="refused", metadata={}
        )
        assert created and refused.status == "queued"  # the caller's answer: recorded, queued
        await asyncio.sleep(0.5)  # the broker refuses it meanwhile, more than once
        assert services.tasks.handovers_in_flight == 1
        assert (await services.tasks.get("default", refused.id)).handover_pending

        policy(rabbit_vhost, "clear_policy", "full")
        task = await _wait_succeeded(services, refused.id)
        assert task.status == "succeeded" and task.output == "echo: refused"
        assert services.tasks.handovers_in_flight == 0
        assert not task.handover_pending and await services.records.pending_handovers() == []


@pytest.mark.rabbitmq
async def test_a_pending_hand_over_survives_a_server_restart(
    tmp_path: Path, rabbit_vhost: str
) -> None:
    settings = load_settings(
        home=tmp_path, broker_url=rabbit_vhost, log_events=False, task_handover_sweep_s=0.5
    )
    async with started(settings) as first:  # it stops before the broker takes the task
        await refuse_everything(first, rabbit_vhost)
        stranded, _ = await first.tasks.submit(
            "default", agent="echo", input="stranded", metadata={}
        )
    [pending] = await _pending(settings)
    assert pending.id == stranded.id and pending.handover_pending

    policy(rabbit_vhost, "clear_policy", "full")
    await asyncio.sleep(0.6)  # nobody has said for task_handover_sweep_s that it is on it
    async with started(settings) as second:
        assert await second.tasks.resume_handovers() == 1
        task = await _wait_succeeded(second, stranded.id)
        assert task.status == "succeeded" and task.output == "echo: stranded"
        assert task.attempts == 1  # the taken-over message is the first run's
        assert not task.handover_pending and await second.records.pending_handovers() == []


@pytest.mark.rabbitmq
async def test_a_refused_task_holds_back_no_other(tmp_path: Path, rabbit_vhost: str) -> None:
    settings = load_settings(home=tmp_path, broker_url=rabbit_vhost, log_events=False)
    async with started(settings) as services:
        await refuse_everything(services, rabbit_vhost)
        await services.tasks.submit("default", agent="echo", input="refused", metadata={})
        await asyncio.sleep(6.5)  # refused 7 times: the next try is ~6.4 s away
        policy(rabbit_vhost, "clear_policy", "full")
        await asyncio.sleep(1)  # policies apply asynchronously
        taken, _ = await services.tasks.submit("default", agent="echo", input="taken", metadata={})
        await until(lambda: _handed_over(services, taken.id), within_s=3)  # not after the pause


async def test_the_claim_clears_the_flag_a_failed_note_left(tmp_path: Path) -> None:
    """The broker took the message but the note said nothing (the process died first): the
    worker's claim clears the flag, so no sweep offers the task again."""
    async with started(load_settings(home=tmp_path, log_events=False)) as services:
        now = datetime.now(UTC)
        task = TaskRecord(
            id="task_unnoted",
            tenant_id="default",
            agent="echo",
            status="queued",
            input="unnoted",
            created_at=now,
            updated_at=now,
            handover_pending=True,
        )
        await services.records.create_task(task)
        await services.broker.publish(_taken_over(task), queue=TASK_QUEUE)
        done = await _wait_succeeded(services, task.id)
        assert done.status == "succeeded" and not done.handover_pending


async def _handed_over(services: Services, task_id: str) -> bool:
    return not (await services.tasks.get("default", task_id)).handover_pending


async def _none_pending(services: Services) -> bool:
    return await services.records.pending_handovers() == []


async def _pending(settings: Settings) -> list[TaskRecord]:
    services = build_services(APP, settings)
    try:
        return await services.records.pending_handovers()
    finally:
        await services.close()


async def test_a_task_taken_by_the_broker_is_no_longer_pending(tmp_path: Path) -> None:
    async with started(load_settings(home=tmp_path, log_events=False)) as services:
        tasks = [
            (await services.tasks.submit("default", agent="echo", input=f"t{n}", metadata={}))[0]
            for n in range(5)
        ]
        assert all(t.handover_pending for t in tasks)  # recorded before the broker had it
        await until(lambda: services.tasks.handovers_in_flight == 0)
        assert await services.records.pending_handovers() == []
        for t in tasks:
            assert not (await services.tasks.get("default", t.id)).handover_pending


async def test_the_sweep_offers_what_a_dead_server_left_pending(tmp_path: Path) -> None:
    """A server that died for good never resumes its tasks: another server's sweep offers the
    ones still pending after ``sweep_s``."""
    async with started(load_settings(home=tmp_path, log_events=False)) as services:
        await _sweep_finds_the_orphan(services)


async def _sweep_finds_the_orphan(services: Services) -> None:
    handover = Handover(
        services.records,
        services.broker,
        TASK_QUEUE,
        lambda task: TaskMessage(
            task_id=task.id, tenant_id=task.tenant_id, agent=task.agent, body=b"{}"
        ),
        sweep_s=0.3,
    )
    try:
        assert await handover.resume() == 0
        now = datetime.now(UTC)
        orphan = TaskRecord(  # what the dead server recorded and never handed over
            id="task_orphan",
            tenant_id="default",
            agent="echo",
            status="queued",
            input="orphan",
            metadata={},
            created_at=now,
            updated_at=now,
            handover_pending=True,
        )
        await services.records.create_task(orphan)
        await until(lambda: _none_pending(services))
        async with services.broker.consume(TASK_QUEUE, prefetch=1) as deliveries:
            delivery = await asyncio.wait_for(anext(deliveries), 10)
            assert delivery.message.task_id == "task_orphan"
            await delivery.ack()
    finally:
        await handover.close()
