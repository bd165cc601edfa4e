"""``GET /metrics`` against a real ``shipyard serve`` process: who may read it, and that its
values move as runs succeed and fail (counts, token sums, histogram buckets)."""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from shipyard.app import App
from shipyard.config import load_settings
from tests.servers import ServerProcess
from tests.telemetry.scrape import (
    Scrape,
    bucket_deltas,
    delta,
    eventually,
    landed_in,
    parse,
    scrape,
)

INVOKE = "/v1/agents/{agent}/invoke"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        home=tmp_path_factory.mktemp("home"),
        app="tests.e2e.apps:app",
        env_extra={"SHIPYARD_RUN_TIMEOUT_S": "2"},
    ).start()
    yield proc
    proc.stop()


def key(server: ServerProcess, tenant: str, scopes: str) -> str:
    done = server.cli("keys", "create", "--tenant", tenant, "--scopes", scopes)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def client(server: ServerProcess, secret: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Iterator[httpx.Client]:
    with client(server, server.admin_key) as c:
        yield c


def invoke(admin: httpx.Client, agent: str, text: str = "hi") -> httpx.Response:
    return admin.post(f"/v1/agents/{agent}/invoke", json={"input": text})


def test_metrics_need_a_key_with_the_read_scope(server: ServerProcess) -> None:
    with client(server, None) as anonymous:
        missing = anonymous.get("/metrics")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
    with client(server, "sk_shp_nope") as wrong:
        assert wrong.get("/metrics").status_code == 401
    with client(server, key(server, "default", "invoke")) as invoker:
        refused = invoker.get("/metrics")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    with client(server, key(server, "default", "read")) as reader:
        found = scrape(reader)
    assert found.types["shipyard_runs"] == "counter"
    assert found.types["shipyard_run_duration_seconds"] == "histogram"


def test_values_move_as_runs_succeed_and_fail(admin: httpx.Client) -> None:
    before = scrape(admin)
    calc = invoke(admin, "calc", "2+3?")
    echo = invoke(admin, "echo", "hello")
    broken = invoke(admin, "broken")
    crashy = invoke(admin, "crashy")
    missing = invoke(admin, "no-such-agent")
    assert [r.status_code for r in (calc, echo, broken, crashy, missing)] == [
        200,
        200,
        502,
        500,
        404,
    ]
    expected = {(INVOKE, "200"): 2, (INVOKE, "502"): 1, (INVOKE, "500"): 1, (INVOKE, "404"): 1}
    after = eventually(admin, lambda s: all(
        delta(before, s, "shipyard_http_requests_total", route=r, status=c) == n
        for (r, c), n in expected.items()
    ))  # fmt: skip

    def moved(name: str, **labels: str) -> float:
        return delta(before, after, name, **labels)

    # runs by agent, execution model and outcome; errors by code
    runs = "shipyard_runs_total"
    assert moved(runs, agent="calc", execution="stateless", outcome="succeeded") == 1
    assert moved(runs, agent="echo", execution="stateless", outcome="succeeded") == 1
    assert moved(runs, agent="broken", execution="stateless", outcome="failed") == 1
    assert moved(runs, agent="crashy", execution="stateless", outcome="failed") == 1
    assert moved(runs, outcome="failed") == 2 and moved(runs) == 4
    assert moved("shipyard_run_errors_total", agent="broken", code="model_error") == 1
    assert moved("shipyard_run_errors_total", agent="crashy", code="run_failed") == 1
    assert moved("shipyard_run_errors_total") == 2

    # run latency: each run raised exactly the buckets at or above its own latency
    for reply in (calc, echo):
        body = reply.json()
        name, labels = "shipyard_run_duration_seconds", {"agent": body["agent"]}
        landed_in(bucket_deltas(before, after, name, **labels), [body["latency_ms"] / 1000])
        assert moved(f"{name}_count", **labels) == 1
        assert moved(f"{name}_sum", **labels) == pytest.approx(body["latency_ms"] / 1000)
    assert moved("shipyard_run_duration_seconds_count", agent="broken") == 1

    # tokens and cost by model, agent and tenant: the sums of what the callers were told
    tokens = "shipyard_llm_tokens_total"
    for reply in (calc, echo):
        body = reply.json()
        usage, tenant = body["usage"], {"agent": body["agent"], "tenant": "default"}
        assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
        assert moved(tokens, type="prompt", **tenant) == usage["prompt_tokens"]
        assert moved(tokens, type="completion", **tenant) == usage["completion_tokens"]
        cost = moved("shipyard_llm_cost_usd_total", **tenant)
        assert cost == pytest.approx(usage["cost_usd"])
    models = {ls["model"] for ls in after.labels(tokens) if ls["agent"] == "echo"}
    assert models == {"scripted:echo"}
    assert moved("shipyard_llm_request_duration_seconds_count", model="scripted:echo") == 1
    calc_model = next(ls["model"] for ls in after.labels(tokens) if ls["agent"] == "calc")
    assert moved("shipyard_llm_request_duration_seconds_count", model=calc_model) == 2

    # tools: one call of add, no error
    assert moved("shipyard_tool_duration_seconds_count", agent="calc", tool="add") == 1
    assert moved("shipyard_tool_duration_seconds_bucket", agent="calc", tool="add", le="+Inf") == 1
    assert moved("shipyard_tool_errors_total", agent="calc") == 0

    # HTTP by route template and status (the unknown agent's 404 too), never the raw path
    http = "shipyard_http_request_duration_seconds"
    for (route, status), n in expected.items():
        assert moved(f"{http}_count", method="POST", route=route, status=status) == n
        assert moved(f"{http}_bucket", route=route, status=status, le="+Inf") == n
    routes = {ls["route"] for ls in after.labels("shipyard_http_requests_total")}
    assert "/metrics" in routes and not any("no-such-agent" in r for r in routes)

    # no id is ever a label
    ids = {r.json()["run_id"] for r in (calc, echo)} | {r.json()["trace_id"] for r in (calc, echo)}
    values = {v for (_, labels) in after.samples for _, v in labels}
    assert not ids & values
    assert not [v for v in values if re.fullmatch(r"[a-z]+_[0-9a-f]{20,}", v)]  # new_id's shape


def test_unknown_paths_and_methods_are_fixed_labels(admin: httpx.Client) -> None:
    before = scrape(admin)
    assert admin.get("/no/such/path/123").status_code == 404
    assert admin.get("/no/such/path/456").status_code == 404
    assert admin.request("PROPFIND", "/healthz").status_code == 405
    requests = "shipyard_http_requests_total"

    def seen(s: Scrape) -> bool:
        unmatched = delta(before, s, requests, method="GET", route="unmatched", status="404")
        odd = delta(before, s, requests, method="other", route="/healthz", status="405")
        return unmatched == 2 and odd == 1

    after = eventually(admin, seen)
    assert seen(after)
    labels = after.labels(requests)
    assert not any("/no/such" in ls["route"] for ls in labels)
    assert "PROPFIND" not in {ls["method"] for ls in labels}


def test_a_streamed_response_is_timed_until_it_ends(admin: httpx.Client) -> None:
    before = scrape(admin)
    with admin.stream(
        "POST", "/v1/agents/slow_echo/invoke", json={"input": "slowly"},
        headers={"Accept": "text/event-stream"},
    ) as reply:  # fmt: skip
        assert reply.status_code == 200
        frames = [json.loads(line[6:]) for line in reply.iter_lines() if line.startswith("data: ")]
    assert frames[-1]["type"] == "run.completed"
    run_s = frames[-1]["data"]["latency_ms"] / 1000
    labels = {"route": INVOKE, "status": "200"}
    name = "shipyard_http_request_duration_seconds"
    after = eventually(admin, lambda s: delta(before, s, f"{name}_count", **labels) == 1)
    assert delta(before, after, f"{name}_count", **labels) == 1
    assert delta(before, after, f"{name}_sum", **labels) >= run_s  # the run ran inside it
    assert delta(before, after, "shipyard_runs_total", agent="slow_echo") == 1


def test_a_tenant_key_sees_its_own_usage_only(server: ServerProcess, admin: httpx.Client) -> None:
    assert invoke(admin, "echo").status_code == 200
    with client(server, key(server, "acme", "invoke,read")) as acme:
        assert invoke(acme, "echo").status_code == 200
        mine = scrape(acme)
    everything = scrape(admin)
    tokens = "shipyard_llm_tokens_total"
    assert {ls["tenant"] for ls in mine.labels(tokens)} == {"acme"}
    assert {"acme", "default"} <= {ls["tenant"] for ls in everything.labels(tokens)}
    assert mine["shipyard_runs_total", {"agent": "echo"}] > 0  # process-wide series stay


def test_a_tenant_admin_is_no_operator(server: ServerProcess, admin: httpx.Client) -> None:
    """The admin scope spans one tenant; only the operator's (tenant ``default``) admin keys
    read what spans tenants: every tenant's metrics and the workers."""
    assert invoke(admin, "echo").status_code == 200
    with client(server, key(server, "globex", "admin")) as globex:
        assert invoke(globex, "echo").status_code == 200  # admin covers invoke in its tenant
        mine = scrape(globex)
        workers = globex.get("/v1/workers")
    tokens = "shipyard_llm_tokens_total"
    assert {ls["tenant"] for ls in mine.labels(tokens)} == {"globex"}
    assert workers.status_code == 403, workers.text
    assert workers.json()["error"]["code"] == "forbidden"
    everything = scrape(admin)
    assert {"globex", "default"} <= {ls["tenant"] for ls in everything.labels(tokens)}
    assert admin.get("/v1/workers").status_code == 200


def gauge_is(name: str, value: float) -> Callable[[Scrape], bool]:
    return lambda s: s[name, {}] == value


async def test_sessions_and_websockets_are_gauged(server: ServerProcess) -> None:
    sockets, active = "shipyard_websocket_connections", "shipyard_active_sessions"
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as admin:

        async def until(check: Callable[[Scrape], bool]) -> Scrape:
            for _ in range(200):
                found = parse(await admin.get("/metrics"))
                if check(found):
                    return found
                await asyncio.sleep(0.05)
            raise AssertionError("the metrics did not move")

        before = await until(gauge_is(sockets, 0))
        session = (await admin.post("/v1/sessions", json={"agent": "sleepy"})).json()["id"]
        url = f"ws://127.0.0.1:{server.port}/v1/sessions/{session}/ws"
        async with connect(url, additional_headers=headers) as conn:
            await until(gauge_is(sockets, 1))
            await conn.send(json.dumps({"type": "turn", "input": "sleep"}))
            await until(gauge_is(active, 1))  # sleepy holds its turn until the 2 s run timeout
            frame: dict[str, Any] = {}
            while frame.get("type") != "turn.done":
                frame = json.loads(await asyncio.wait_for(conn.recv(), 30))
            assert frame["status"] == "failed"
            await until(gauge_is(active, 0))
        after = await until(gauge_is(sockets, 0))
    runs = "shipyard_runs_total"
    assert delta(before, after, runs, agent="sleepy", execution="session", outcome="failed") == 1
    assert delta(before, after, "shipyard_run_errors_total", code="run_timeout") == 1
    assert math.isfinite(after["shipyard_queue_depth", {"queue": "tasks"}])


async def test_metrics_turned_off_answer_404(tmp_path: Path) -> None:
    asgi = App().asgi(load_settings(home=tmp_path, metrics=False), prepare=False)
    services, keys = asgi.state.services, asgi.state.keys
    await services.records.migrate()
    secret, _ = await keys.create("default", ["read"])
    try:
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://shipyard") as c:
            reply = await c.get("/metrics", headers={"Authorization": f"Bearer {secret}"})
    finally:
        await services.close()
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found"
