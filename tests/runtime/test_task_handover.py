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
from shipyard.runtime.worker import Worker
from tests.e2e.test_tasks import rabbit_vhost

__all__ = ["rabbit_vhost"]

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
        policy(
            rabbit_vhost,
            "set_policy",
            "full",
            ".*",
            '{"max-length": 0, "overflow": "reject-publish"}',
            "--apply-to",
            "queues",
        )
        await asyncio.sleep(1)  # policies apply asynchronously
        with pytest.raises(StoreError):
            await services.tasks.submit("default", agent="echo", input="refused", metadata={})
        assert services.tasks.pending_handovers == 1
        [refused] = [
            t
            for t in (await services.tasks.listing(
                "default", status="queued", agent="echo", limit=10, cursor=None
            )).items
            if t.input == "refused"
        ]  # fmt: skip

        policy(rabbit_vhost, "clear_policy", "full")
        worker = Worker(services, concurrency=2)
        running = asyncio.create_task(worker.run())
        try:
            for _ in range(600):
                task = await services.tasks.get("default", refused.id)
                if task.status == "succeeded":
                    break
                await asyncio.sleep(0.05)
            assert task.status == "succeeded" and task.output == "echo: refused"
            assert services.tasks.pending_handovers == 0
        finally:
            worker.stop()
            await asyncio.wait_for(running, 30)
    finally:
        await services.close()
