"""The egress policy at delivery, on the real services (SQLite records): a delivery stored with
an internal target — written before the policy, or a name that resolves elsewhere since — is
given up at its first attempt, with the reason logged and the URL's credentials left out."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from structlog.testing import capture_logs

from shipyard.runtime.outbox import WebhookOutbox
from tests.runtime.test_retention import delivery, services_in, until


def row(home: Path, task_id: str) -> tuple[str, int, str | None]:
    with closing(sqlite3.connect(home / "shipyard.db")) as conn:
        found = conn.execute(
            "SELECT status, attempts, last_error FROM webhook_deliveries WHERE task_id = ?",
            (task_id,),
        ).fetchone()
    return found[0], found[1], found[2]


async def test_a_delivery_to_an_internal_address_is_given_up_not_retried(tmp_path: Path) -> None:
    async with services_in(tmp_path) as services:
        url = "http://user:s3cret@2130706433:6379/hook"  # 127.0.0.1, spelt in decimal
        await services.records.add_webhook(delivery("t1", url=url, next_at=datetime.now(UTC)))
        outbox = WebhookOutbox(services.records, services.webhooks)

        async def settled() -> bool:
            return row(tmp_path, "t1")[0] != "pending"

        with capture_logs() as logs:
            task = asyncio.create_task(outbox.run())
            try:
                await until(settled)
            finally:
                outbox.stop()
                await task
    assert row(tmp_path, "t1") == ("failed", 1, "denied")
    denied = [e for e in logs if e["event"] == "webhook denied"]
    assert len(denied) == 1 and "loopback" in denied[0]["reason"]
    gave_up = [e for e in logs if e["event"] == "webhook gave up"]
    assert gave_up[0]["outcome"] == "denied"
    assert "s3cret" not in repr(logs)
