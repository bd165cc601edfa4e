"""A task the broker refuses is not lost: the caller hears 503 (StoreError) and the recorded task
is handed over again in the background once the broker takes messages again (real RabbitMQ,
refusing through a reject-publish policy on the vhost)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

import shipyard
from shipyard.app import build_services
from shipyard.config import load_settings
from shipyard.errors import StoreError
from shipyard.runtime.services import Services
from shipyard.runtime.worker import Worker
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


@pytest.mark.rabbitmq
async def test_a_pending_hand_over_survives_a_server_restart(
    tmp_path: Path, rabbit_vhost: str
) -> None:
    settings = load_settings(home=tmp_path, broker_url=rabbit_vhost, log_events=False)
    first = build_services(APP, settings)
    await first.records.migrate()
    await first.start()
    try:
        await first.tasks.submit("default", agent="echo", input="warm-up", metadata={})
        policy(rabbit_vhost, "set_policy", "full", ".*", REJECT, "--apply-to", "queues")
        await asyncio.sleep(1)
        with pytest.raises(StoreError):
            await first.tasks.submit("default", agent="echo", input="stranded", metadata={})
        await asyncio.sleep(0.2)  # the background hand-over notes it in the records
        [stranded] = await first.records.pending_handovers()
        assert stranded.input == "stranded" and stranded.handover_pending
    finally:
        await first.close()  # the server stops before the broker takes the task

    policy(rabbit_vhost, "clear_policy", "full")
    second = build_services(APP, settings)
    await second.start()
    try:
        assert await second.tasks.resume_handovers() == 1
        task = await _wait_succeeded(second, stranded.id)
        assert task.status == "succeeded" and task.output == "echo: stranded"
        assert not task.handover_pending and await second.records.pending_handovers() == []
    finally:
        await second.close()


@pytest.mark.rabbitmq
async def test_a_refused_task_is_handed_over_when_the_broker_takes_it_again(
    tmp_path: Path, rabbit_vhost: str
) -> None:
    settings = load_settings(home=tmp_path, broker_url=rabbit_vhost, log_events=False)
    services = build_services(APP, settings)
    await services.records.migrate()
    await services.start()
    try:
        # the queue exists, then refuses every message
        await services.tasks.submit("default", agent="echo", input="warm-up", metadata={})
        policy(rabbit_vhost, "set_policy", "full", ".*", REJECT, "--apply-to", "queues")
        await asyncio.sleep(1)  # policies apply asynchronously
        with pytest.raises(StoreError):
            await services.tasks.submit("default", agent="echo", input="refused", metadata={})
        assert services.tasks.handovers_in_flight == 1
        [refused] = [
            t
            for t in (await services.tasks.listing(
                "default", status="queued", agent="echo", limit=10, cursor=None
            )).items
            if t.input == "refused"
        ]  # fmt: skip

        policy(rabbit_vhost, "clear_policy", "full")
        task = await _wait_succeeded(services, refused.id)
        assert task.status == "succeeded" and task.output == "echo: refused"
        assert services.tasks.handovers_in_flight == 0
    finally:
        await services.close()
