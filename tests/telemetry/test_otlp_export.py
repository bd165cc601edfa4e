"""A real ``shipyard serve`` process exports its spans over OTLP/HTTP to a receiver in the test,
and keeps the same spans in its record store (``GET /v1/traces/{trace_id}``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shipyard.telemetry.tracecontext import TraceParent
from tests.servers import ServerProcess
from tests.telemetry.otlp import OtlpReceiver, ReceivedSpan


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver) -> Iterator[Any]:
    proc = ServerProcess(
        home=tmp_path_factory.mktemp("home"),
        app="tests.e2e.apps:app",
        env_extra={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test",
        },
    ).start()
    yield proc
    proc.stop()


def stored_trace(server: ServerProcess, trace_id: str, count: int) -> dict[str, Any]:
    """Poll ``GET /v1/traces/{id}`` until the store has ``count`` spans (it flushes in the
    background); fail after a deadline."""
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    deadline = time.monotonic() + 30
    while True:
        reply = httpx.get(f"{server.url}/v1/traces/{trace_id}", headers=headers, timeout=10)
        if reply.status_code == 200 and len(reply.json()["spans"]) >= count:
            return reply.json()  # type: ignore[no-any-return]
        assert reply.status_code in (200, 404), reply.text
        assert time.monotonic() < deadline, f"the store has {reply.text} after 30 s"
        time.sleep(0.1)


def test_one_request_is_one_trace_exported_and_stored(
    server: ServerProcess, receiver: OtlpReceiver
) -> None:
    caller = TraceParent.new()
    reply = httpx.post(
        f"{server.url}/v1/agents/calc/invoke",
        json={"input": "what is 2+3?"},
        headers={"Authorization": f"Bearer {server.admin_key}", "traceparent": caller.header()},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["trace_id"] == caller.trace_id

    spans = receiver.wait_for(caller.trace_id, 4)  # the run, two model calls, one tool call
    assert len(spans) == 4
    by_op: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        by_op.setdefault(span.attributes["gen_ai.operation.name"], []).append(span)
    [run], chats, [tool] = by_op["invoke_agent"], by_op["chat"], by_op["execute_tool"]

    assert run.name == "invoke_agent calc" and run.kind == "SPAN_KIND_INTERNAL"
    assert run.parent_span_id == caller.span_id
    assert run.attributes["gen_ai.agent.name"] == "calc"
    assert run.attributes["shipyard.run_id"] == reply.json()["run_id"]
    assert run.attributes["shipyard.tenant_id"] == "default"
    assert run.attributes["gen_ai.usage.input_tokens"] == reply.json()["usage"]["prompt_tokens"]
    assert run.status == "STATUS_CODE_UNSET"
    assert run.resource["service.name"] == "shipyard"
    assert run.resource["deployment.environment.name"] == "test"
    assert run.scope == "shipyard"

    assert len(chats) == 2
    for chat in chats:
        assert chat.parent_span_id == run.span_id and chat.kind == "SPAN_KIND_CLIENT"
        assert chat.attributes["gen_ai.request.model"] == "test"
        assert chat.attributes["gen_ai.provider.name"] == "scripted"
        assert chat.attributes["gen_ai.response.finish_reasons"] in (["tool_calls"], ["stop"])
        assert run.start_ns <= chat.start_ns <= chat.end_ns <= run.end_ns
    assert tool.parent_span_id == run.span_id and tool.name == "execute_tool add"
    assert tool.attributes["gen_ai.tool.name"] == "add"

    stored = stored_trace(server, caller.trace_id, 4)
    assert stored["trace_id"] == caller.trace_id
    assert [s["start_time"] for s in stored["spans"]] == sorted(
        s["start_time"] for s in stored["spans"]
    )
    assert {
        s["span_id"]: (s["parent_span_id"], s["name"], s["attributes"]) for s in stored["spans"]
    } == {s.span_id: (s.parent_span_id, s.name, s.attributes) for s in spans}
    [stored_run] = [s for s in stored["spans"] if s["span_id"] == run.span_id]
    assert stored_run["service"] == "shipyard" and stored_run["kind"] == "internal"
    assert stored_run["duration_ms"] == pytest.approx((run.end_ns - run.start_ns) / 1e6, abs=1e-3)


def test_a_failed_run_is_an_error_span(server: ServerProcess, receiver: OtlpReceiver) -> None:
    caller = TraceParent.new()
    reply = httpx.post(
        f"{server.url}/v1/agents/broken/invoke",
        json={"input": "hi"},
        headers={"Authorization": f"Bearer {server.admin_key}", "traceparent": caller.header()},
        timeout=30,
    )
    assert reply.status_code == 502
    spans = {s.name: s for s in receiver.wait_for(caller.trace_id, 2)}
    run = spans["invoke_agent broken"]
    assert run.status == "STATUS_CODE_ERROR"
    assert run.attributes["error.type"] == "model_error"
    assert spans["chat test"].status == "STATUS_CODE_ERROR"


def test_without_a_traceparent_the_run_is_the_root(
    server: ServerProcess, receiver: OtlpReceiver
) -> None:
    reply = httpx.post(
        f"{server.url}/v1/agents/echo/invoke",
        json={"input": "hi"},
        headers={"Authorization": f"Bearer {server.admin_key}"},
        timeout=30,
    )
    assert reply.status_code == 200
    trace_id = reply.json()["trace_id"]
    spans = {s.name: s for s in receiver.wait_for(trace_id, 2)}
    run = spans["invoke_agent echo"]
    assert run.parent_span_id is None
    assert spans["chat echo"].parent_span_id == run.span_id
