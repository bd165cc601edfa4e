"""Retention, on the real services (SQLite records, embedded broker, a worker in this process):
a running worker deletes the rows of workers not seen for ``worker_retention_s``, and its
outbox the webhooks settled for ``webhook_retention_s`` — pending ones never — at most once
every ``prune_every_s``."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from structlog.testing import capture_logs

import shipyard
from shipyard.app import build_services
from shipyard.config import load_settings
from shipyard.runtime.services import Services
from shipyard.runtime.worker import Worker
from shipyard.stores.records.base import WebhookDelivery, WorkerRecord

APP = shipyard.App(agents=[shipyard.Agent(name="echo", model="scripted:echo")])
LONG_AGO = datetime.now(UTC) - timedelta(hours=1)
LATER = datetime.now(UTC) + timedelta(days=1)
"""When the pending test delivery is due: not while the test runs."""


def worker_row(name: str, seen: datetime, stopped_at: datetime | None = None) -> WorkerRecord:
    return WorkerRecord(
        name=name,
        host="box",
        pid=42,
        concurrency=1,
        running=0,
        heartbeat_s=5.0,
        started_at=seen,
        last_seen=seen,
        stopped_at=stopped_at,
    )


def delivery(task_id: str, **fields: object) -> WebhookDelivery:
    values: dict[str, object] = {
        "tenant_id": "default",
        "url": "http://127.0.0.1:9/hook",
        "event_id": f"ev-{task_id}",
        "body": "{}",
        "next_at": LATER,
        "created_at": LONG_AGO,
        "updated_at": LONG_AGO,
    }
    if fields.get("status") in ("delivered", "failed"):  # settled: next_at is when it settled
        values["next_at"] = fields.get("updated_at", values["updated_at"])
    return WebhookDelivery.model_validate({"task_id": task_id, **values, **fields})


@asynccontextmanager
async def services_in(home: Path) -> AsyncIterator[Services]:
    built = build_services(APP, load_settings(home=home, log_events=False))
    await built.records.migrate()
    await built.start()
    try:
        yield built
    finally:
        await built.close()


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[None]:
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(200):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{check.__name__} still false after 10 s")


def pruner(services: Services, *, prune_every_s: float) -> Worker:
    """A worker that keeps rows for a minute and beats fast."""
    return Worker(
        services,
        name="pruner",
        heartbeat_s=0.05,
        worker_retention_s=60,
        webhook_retention_s=60,
        prune_every_s=prune_every_s,
    )


def outbox(home: Path) -> set[str]:
    """The task ids of the outbox's rows, read from the SQLite file."""
    with closing(sqlite3.connect(home / "shipyard.db")) as conn:
        return {row[0] for row in conn.execute("SELECT task_id FROM webhook_deliveries")}


async def test_a_running_worker_prunes_old_workers_and_settled_webhooks(tmp_path: Path) -> None:
    async with services_in(tmp_path) as services:
        records = services.records
        await records.heartbeat(worker_row("died", LONG_AGO))
        await records.heartbeat(worker_row("stopped", LONG_AGO, stopped_at=LONG_AGO))
        await records.heartbeat(worker_row("alive", datetime.now(UTC)))
        await records.add_webhook(delivery("delivered", status="delivered"))
        await records.add_webhook(delivery("failed", status="failed"))
        await records.add_webhook(delivery("pending"))  # as old, but still to be delivered
        recent = datetime.now(UTC)
        await records.add_webhook(delivery("recent", status="delivered", updated_at=recent))
        worker = pruner(services, prune_every_s=0.1)

        async def workers() -> set[str]:
            return {w.name for w in await records.list_workers()}

        async def workers_pruned() -> bool:
            return await workers() == {"pruner", "alive"}

        async def webhooks_pruned() -> bool:
            return outbox(tmp_path) == {"pending", "recent"}

        async with running(worker):
            await until(workers_pruned)
            await until(webhooks_pruned)
            # and again once the interval has passed: a worker that died meanwhile goes too
            await records.heartbeat(worker_row("died-later", LONG_AGO))
            await records.add_webhook(delivery("settled-later", status="failed"))
            await until(workers_pruned)
            await until(webhooks_pruned)
        assert await workers() == {"pruner", "alive"}  # the last beat kept the pruner's row


async def test_pruning_happens_at_most_once_per_interval(tmp_path: Path) -> None:
    async with services_in(tmp_path) as services:
        records = services.records
        await records.heartbeat(worker_row("died", LONG_AGO))
        await records.add_webhook(delivery("delivered", status="delivered"))
        worker = pruner(services, prune_every_s=3600)

        async def first_prune_done() -> bool:
            names = {w.name for w in await records.list_workers()}
            return names == {"pruner"} and outbox(tmp_path) == set()

        async with running(worker):
            await until(first_prune_done)  # when the worker starts
            await records.heartbeat(worker_row("died-later", LONG_AGO))
            await records.add_webhook(delivery("settled-later", status="delivered"))
            await asyncio.sleep(1.5)  # thirty heartbeats, three looks of the outbox
            assert {w.name for w in await records.list_workers()} == {"pruner", "died-later"}
            assert outbox(tmp_path) == {"settled-later"}


def refuse_deletes(home: Path, refuse: bool) -> None:
    """Make the database itself refuse (or accept again) deletes from the pruned tables."""
    with closing(sqlite3.connect(home / "shipyard.db")) as conn:
        for table in ("workers", "webhook_deliveries"):
            if refuse:
                conn.execute(
                    f"CREATE TRIGGER keep_{table} BEFORE DELETE ON {table} "
                    "BEGIN SELECT RAISE(ABORT, 'no deletes'); END"
                )
            else:
                conn.execute(f"DROP TRIGGER keep_{table}")
        conn.commit()


async def test_a_failed_prune_is_logged_and_tried_again(tmp_path: Path) -> None:
    async with services_in(tmp_path) as services:
        records = services.records
        await records.heartbeat(worker_row("died", LONG_AGO))
        await records.add_webhook(delivery("delivered", status="delivered"))
        refuse_deletes(tmp_path, True)
        worker = pruner(services, prune_every_s=0.1)

        async def last_seen() -> dict[str, datetime]:
            return {w.name: w.last_seen for w in await records.list_workers()}

        with capture_logs() as logs:

            async def both_failed() -> bool:
                failed = [e for e in logs if e["log_level"] == "warning"]
                events = {e["event"] for e in failed}
                rows = {e["rows"] for e in failed}
                both = {"workers not seen", "settled webhook deliveries"}
                return events == {"rows past their retention not pruned"} and rows == both

            async def pruned() -> bool:
                return set(await last_seen()) == {"pruner"} and outbox(tmp_path) == set()

            async with running(worker):
                await until(both_failed)
                seen = (await last_seen())["pruner"]
                refuse_deletes(tmp_path, False)
                await until(pruned)
                assert (await last_seen())["pruner"] > seen  # the heartbeats went on
