"""A webhook outlives the worker that was delivering it: the outcome waits in the outbox (the
record store), and another worker makes the next attempt."""

from __future__ import annotations

import time
from pathlib import Path

from tests.e2e.test_tasks import client_for, submit, wait_final
from tests.e2e.webhook_receiver import WebhookReceiver
from tests.servers import ServerProcess, WorkerProcess


def test_a_worker_killed_between_attempts_loses_no_webhook(tmp_path: Path) -> None:
    receiver = WebhookReceiver(lambda n: 503 if n == 0 else 204)  # down at first, then up
    server = ServerProcess(
        home=tmp_path,
        app="tests.e2e.apps:app",
        env_extra={"SHIPYARD_WEBHOOK_RETRY_BASE_S": "2", "SHIPYARD_WEBHOOK_ALLOW": receiver.allow},
    ).start()
    first = WorkerProcess(server).start()
    second: WorkerProcess | None = None
    try:
        with client_for(server) as client:
            task_id = submit(client, "echo", "call me back", webhook_url=receiver.url)
            assert wait_final(client, task_id)["status"] == "succeeded"
            receiver.wait_for(1)
            time.sleep(0.5)  # the failed attempt is recorded; the next is due in 2 s
            first.kill()
            second = WorkerProcess(server).start()
            receiver.wait_for(2)
            secret = client.get("/v1/webhooks/secret").json()["secret"]
        time.sleep(1)  # nothing more arrives: delivered once
    finally:
        first.stop()
        if second is not None:
            second.stop()
        server.stop()
        receiver.close()
    assert [status for status, _, _ in receiver.received] == [503, 204]
    first_id, second_id = (headers["Webhook-Id"] for _, headers, _ in receiver.received)
    assert first_id == second_id  # the same event, for the receiver's deduplication
    receiver.check_signatures(secret)
