"""A webhook outlives the worker that was delivering it: the outcome waits in the outbox (the
record store), and another worker makes the next attempt."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.e2e.test_tasks import client_for, submit, wait_final
from tests.servers import ServerProcess, WorkerProcess


def test_a_worker_killed_between_attempts_loses_no_webhook(tmp_path: Path) -> None:
    received: list[tuple[int, dict[str, str], bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # down for the first attempt, then up
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = 503 if not received else 204
            received.append((status, dict(self.headers), body))
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    server = ServerProcess(
        home=tmp_path,
        app="tests.e2e.apps:app",
        env_extra={"SHIPYARD_WEBHOOK_RETRY_BASE_S": "2"},
    ).start()
    first = WorkerProcess(server).start()
    second: WorkerProcess | None = None
    try:
        with client_for(server) as client:
            url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
            task_id = submit(client, "echo", "call me back", webhook_url=url)
            assert wait_final(client, task_id)["status"] == "succeeded"
            deadline = time.monotonic() + 20
            while not received:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            time.sleep(0.5)  # the failed attempt is recorded; the next is due in 2 s
            first.kill()
            second = WorkerProcess(server).start()
            while len(received) < 2:
                assert time.monotonic() < deadline, received
                time.sleep(0.05)
            secret = client.get("/v1/webhooks/secret").json()["secret"]
        time.sleep(1)  # nothing more arrives: delivered once
    finally:
        first.stop()
        if second is not None:
            second.stop()
        server.stop()
        receiver.shutdown()
        receiver.server_close()
    assert [status for status, _, _ in received] == [503, 204]
    first_id, second_id = (headers["Webhook-Id"] for _, headers, _ in received)
    assert first_id == second_id  # the same event, for the receiver's deduplication
    for _, headers, body in received:
        timestamp = headers["Webhook-Timestamp"]
        expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
        assert headers["Webhook-Signature"] == f"v1={expected.hexdigest()}"
