"""A real server with ``SHIPYARD_LOG_FORMAT=json``: its runs' events, as JSON lines on stderr."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.servers import ServerProcess


def test_a_json_server_logs_one_line_per_event_of_each_run(tmp_path: Path) -> None:
    server = ServerProcess(
        home=tmp_path,
        app="tests.e2e.apps:app",
        env_extra={"SHIPYARD_LOG_FORMAT": "json", "SHIPYARD_LOG_LEVEL": "info"},
    ).start()
    try:
        with httpx.Client(
            base_url=server.url,
            headers={"Authorization": f"Bearer {server.admin_key}"},
            timeout=30,
        ) as client:
            reply = client.post("/v1/agents/calc/invoke", json={"input": "2+3?"})
            assert reply.status_code == 200, reply.text
            failed = client.post("/v1/agents/broken/invoke", json={"input": "hi"})
            assert failed.status_code == 502, failed.text
    finally:
        log = server.stop()

    records: list[dict[str, Any]] = []
    for line in log.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))  # every JSON line parses
        else:  # only the human banners are not JSON (serving on..., the first admin key)
            assert "run_id" not in line and "Uvicorn" not in line, line
    uvicorn = [r["event"] for r in records if r.get("logger") == "uvicorn.error"]
    assert any(e.startswith("Uvicorn running on") for e in uvicorn), uvicorn  # routed to JSON
    assert "Finished server process" in " ".join(uvicorn)  # flushed on the way out
    events = [r for r in records if r.get("logger") == "shipyard.events"]

    run = reply.json()
    calc = [r for r in events if r["run_id"] == run["run_id"]]
    assert [r["event"] for r in calc] == [
        "run.started", "llm.request", "llm.response", "tool.call", "tool.result",
        "llm.request", "llm.response", "run.completed",
    ]  # fmt: skip
    assert [r["seq"] for r in calc] == list(range(1, 9))
    assert {(r["tenant_id"], r["agent"], r["trace_id"]) for r in calc} == {
        ("default", "calc", run["trace_id"])
    }
    assert all(r["timestamp"].endswith("Z") for r in calc)
    assert "input" not in calc[0] and "output" not in calc[-1]  # no bodies at info

    broken = [r for r in events if r["agent"] == "broken"]
    assert [(r["event"], r["level"]) for r in broken] == [
        ("run.started", "info"), ("llm.request", "info"), ("run.failed", "warning")
    ]  # fmt: skip
    assert broken[-1]["error_code"] == "model_error"
