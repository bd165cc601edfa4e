"""The egress policy at delivery, on the real services (SQLite records): a delivery stored with
an internal target — written before the policy, or a name that resolves elsewhere since — is
given up at its first attempt, with the reason logged and the URL's credentials left out."""

from __future__ import annotations

import asyncio
import ipaddress
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from shipyard.errors import EgressDenied
from shipyard.guard.egress import EgressPolicy, IPAddress
from shipyard.guard.rules import EgressRules
from shipyard.runtime.outbox import WebhookOutbox
from shipyard.runtime.webhooks import WebhookSender
from shipyard.telemetry.metrics import Metrics
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


async def test_a_name_that_turns_private_after_submit_is_refused_at_delivery() -> None:
    """DNS answers a public address when the task is submitted and a loopback one at
    delivery: the submit check passes, the delivery is denied (nothing sent), and the denial is
    recorded in the log and the metrics (webhooks run outside any run's event stream)."""
    answers = {"hooks.example.test": ["93.184.216.34"]}

    async def dns(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(a) for a in answers[host]]

    metrics = Metrics()
    sender = WebhookSender(
        "k" * 32,
        policy=EgressPolicy(setting="SHIPYARD_WEBHOOK_ALLOW", resolver=dns),
        report=metrics.webhook_egress,
    )
    url = "http://hooks.example.test:6379/hook"
    try:
        await sender.check_target(url, field="webhook_url")  # public now: accepted
        answers["hooks.example.test"] = ["127.0.0.1"]  # rebound to the loopback
        with capture_logs() as logs:
            outcome = await sender.attempt(url, tenant_id="t", event_id="e", body=b"{}", number=1)
    finally:
        await sender.close()
    assert outcome == "denied"
    [record] = [e for e in logs if e["event"] == "egress.request"]
    assert record["source"] == "webhook" and record["allowed"] is False
    assert record["rule"] == "address" and "loopback" in record["reason"]
    assert record["log_level"] == "warning" and record["host"] == "hooks.example.test"
    text = metrics.render().decode()
    assert 'shipyard_egress_denials_total{rule="address",source="webhook"} 1.0' in text


async def test_webhook_rules_refuse_at_submit_naming_the_rule() -> None:
    sender = WebhookSender(
        "k" * 32,
        rules=EgressRules(
            hosts=["*.hooks.example", "010.010.010.010"], schemes=["https"], ports=[443]
        ),
    )
    try:
        cases = {
            "https://evil.test/h": "webhook.hosts",
            "http://a.hooks.example/h": "webhook.schemes",
            "https://a.hooks.example:8443/h": "webhook.ports",
            "https://user:pw@a.hooks.example/h": "url",
            "https://169.254.169.254/h": "webhook.hosts",
            "https://010.010.010.010/h": "url",  # 8.8.8.8 in octal: httpx cannot send it
        }
        for url, rule in cases.items():
            with pytest.raises(EgressDenied) as caught:
                await sender.check_target(url, field="webhook_url")
            assert caught.value.details == {"field": "webhook_url", "rule": rule}, url
            assert caught.value.message.startswith("webhook_url: ")
            assert "pw" not in caught.value.message
    finally:
        await sender.close()
