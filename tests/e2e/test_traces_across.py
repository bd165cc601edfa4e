"""One request, one trace: it enters over HTTP with a ``traceparent``, crosses RabbitMQ to a
worker, calls a child agent in-process and another through a second task — and comes back as
one trace with correctly parented spans, from the record store and from a real OTLP/HTTP
export decoded here."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_tasks import client_for, rabbit_vhost, submit, wait_final
from tests.servers import ServerProcess, WorkerProcess
from tests.telemetry.otlp import OtlpReceiver

__all__ = ["rabbit_vhost"]

TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


def _op(span: dict[str, Any]) -> Any:
    return span["attributes"].get("gen_ai.operation.name")


def _stored_trace(client: httpx.Client, want_runs: int) -> list[dict[str, Any]]:
    """The trace's spans once every run's span is stored (spans are flushed in batches)."""
    deadline = time.monotonic() + 30
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        reply = client.get(f"/v1/traces/{TRACE}")
        if reply.status_code == 200:
            spans = reply.json()["spans"]
            runs = [
                s for s in spans if s["attributes"].get("gen_ai.operation.name") == "invoke_agent"
            ]
            chats = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
            if len(runs) == want_runs and len(chats) == 2:
                return spans
        time.sleep(0.2)
    raise AssertionError(f"trace {TRACE} incomplete: {spans}")


def _check_tree(spans: list[dict[str, Any]], runs_by_agent: dict[str, str]) -> None:
    """``spans``: span_id, parent_span_id, attributes (as plain dicts), from either source."""
    by_run = {
        s["attributes"]["shipyard.run_id"]: s
        for s in spans
        if s["attributes"].get("gen_ai.operation.name") == "invoke_agent"
    }
    triage = by_run[runs_by_agent["triage"]]
    researcher = by_run[runs_by_agent["researcher"]]
    writer = by_run[runs_by_agent["writer"]]
    assert triage["parent_span_id"] == CALLER_SPAN  # under the HTTP caller's span
    # triage is a function agent: its children hang under its run span, across the broker too
    assert researcher["parent_span_id"] == triage["span_id"]
    assert writer["parent_span_id"] == triage["span_id"]
    assert triage["attributes"]["gen_ai.agent.name"] == "triage"
    assert researcher["attributes"]["shipyard.parent_run_id"] == runs_by_agent["triage"]
    chats = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
    assert sorted(c["parent_span_id"] for c in chats) == sorted(
        [researcher["span_id"], writer["span_id"]]
    )
    for chat in chats:
        assert chat["attributes"]["gen_ai.provider.name"] == "scripted"
        assert chat["attributes"]["gen_ai.request.model"] == "echo"


def _gen_ai_ids(spans: list[dict[str, Any]]) -> set[str]:
    return {s["span_id"] for s in spans if "gen_ai.operation.name" in s["attributes"]}


@pytest.mark.rabbitmq
def test_one_trace_across_http_rabbitmq_a_worker_and_child_agents(
    tmp_path: Path, rabbit_vhost: str
) -> None:
    with OtlpReceiver() as otlp:
        server = ServerProcess(
            home=tmp_path,
            app="examples.triage:app",
            env_extra={
                "SHIPYARD_BROKER_URL": rabbit_vhost,
                "SHIPYARD_MODEL": "scripted:echo",
                "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            },
        ).start()
        worker = WorkerProcess(server, concurrency=4).start()
        try:
            with client_for(server) as client:
                task_id = submit(
                    client,
                    "triage",
                    "why is the sky blue?",
                    headers={"traceparent": f"00-{TRACE}-{CALLER_SPAN}-01"},
                )
                task = wait_final(client, task_id)
                assert task["status"] == "succeeded", task
                assert task["output"].startswith("echo: Question: why is the sky blue?")

                triage_run = client.get(f"/v1/runs/{task['run_id']}").json()
                children = client.get("/v1/runs", params={"limit": 50}).json()["runs"]
                runs_by_agent = {r["agent"]: r["id"] for r in children}
                assert runs_by_agent["triage"] == triage_run["id"]
                for agent in ("researcher", "writer"):
                    child = client.get(f"/v1/runs/{runs_by_agent[agent]}").json()
                    assert child["parent_run_id"] == triage_run["id"]
                    assert child["trace_id"] == TRACE

                stored = _stored_trace(client, want_runs=3)
                assert {s["trace_id"] for s in stored} == {TRACE}
                _check_tree(stored, runs_by_agent)

                # three runs and two model calls, from the worker's exporter
                exported = [dataclasses.asdict(s) for s in otlp.wait_for(TRACE, count=5)]
                assert {s["resource"]["service.name"] for s in exported} == {"shipyard-worker"}
                _check_tree(exported, runs_by_agent)
                # the store and the exporter show the same spans
                assert _gen_ai_ids(exported) == _gen_ai_ids(stored)
        finally:
            worker.stop()
            server.stop()
