"""The HTTP API end to end, against a real ``shipyard serve`` process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.servers import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        home=tmp_path_factory.mktemp("home"),
        app="tests.e2e.apps:app",
        env_extra={"SHIPYARD_RUN_TIMEOUT_S": "1", "SHIPYARD_KEY_CACHE_S": "1"},
    ).start()
    yield proc
    log = proc.stop()
    assert "secret internal detail" in log  # an agent's bug is logged server-side, in full


def make_key(server: ServerProcess, tenant: str, scopes: str) -> str:
    done = server.cli("keys", "create", "--tenant", tenant, "--scopes", scopes)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture(scope="module")
def acme(server: ServerProcess) -> Iterator[httpx.Client]:
    key = make_key(server, "acme", "invoke,read")
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as client:
        yield client


def error_of(reply: httpx.Response) -> dict[str, str]:
    body = reply.json()
    assert set(body) == {"error"}, body
    assert "Traceback" not in reply.text
    return body["error"]  # type: ignore[no-any-return]


def test_health_needs_no_key(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["records"] == "ok"


def test_invoke_answers_and_records_every_step(admin: httpx.Client) -> None:
    reply = admin.post("/v1/agents/calc/invoke", json={"input": "2+3?", "metadata": {"k": "v"}})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["output"] == "It is 5." and body["status"] == "succeeded"
    assert body["usage"]["prompt_tokens"] > 0

    run = admin.get(f"/v1/runs/{body['run_id']}").json()
    assert run["status"] == "succeeded" and run["output"] == "It is 5."
    assert run["metadata"] == {"k": "v"} and run["input"] == "2+3?"
    assert run["tenant_id"] == "default"

    events = admin.get(f"/v1/runs/{body['run_id']}/events").json()["events"]
    assert [e["type"] for e in events] == [
        "run.started", "llm.request", "llm.response", "tool.call", "tool.result",
        "llm.request", "llm.response", "run.completed",
    ]  # fmt: skip
    tool_result = events[4]["data"]
    assert tool_result["ok"] is True and tool_result["output"] == "5"
    assert {e["run_id"] for e in events} == {body["run_id"]}
    assert {e["trace_id"] for e in events} == {body["trace_id"]}
    later = admin.get(f"/v1/runs/{body['run_id']}/events", params={"after": 6}).json()["events"]
    assert [e["seq"] for e in later] == [7, 8]


def test_invoke_accepts_a_list_of_messages(admin: httpx.Client) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"},
    ]
    reply = admin.post("/v1/agents/echo/invoke", json={"input": messages})
    assert reply.status_code == 200 and reply.json()["output"] == "echo: second"


def test_sse_streams_the_run_events(admin: httpx.Client) -> None:
    with admin.stream(
        "POST",
        "/v1/agents/echo/invoke",
        json={"input": "stream me please"},
        headers={"Accept": "text/event-stream"},
    ) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        frames = [json.loads(line[6:]) for line in reply.iter_lines() if line.startswith("data: ")]
    kinds = [f["type"] for f in frames]
    assert kinds[0] == "run.started" and kinds[-1] == "run.completed"
    assert "".join(f["data"]["text"] for f in frames if f["type"] == "llm.delta") == (
        "echo: stream me please"
    )
    run = admin.get(f"/v1/runs/{frames[0]['run_id']}").json()
    assert run["status"] == "succeeded"  # recorded before the stream closed
    stored = admin.get(f"/v1/runs/{frames[0]['run_id']}/events").json()["events"]
    assert "llm.delta" not in {e["type"] for e in stored}


def test_a_client_that_leaves_an_sse_stream_does_not_cancel_the_run(admin: httpx.Client) -> None:
    with admin.stream(
        "POST",
        "/v1/agents/slow_echo/invoke",
        json={"input": "finish without me"},
        headers={"Accept": "text/event-stream"},
    ) as reply:
        first = next(line for line in reply.iter_lines() if line.startswith("data: "))
    run_id = json.loads(first[6:])["run_id"]  # the connection is closed here, mid-run
    for _ in range(100):
        run = admin.get(f"/v1/runs/{run_id}").json()
        if run.get("status") in ("succeeded", "failed"):
            break
        time.sleep(0.05)
    assert run["status"] == "succeeded" and run["output"] == "echo: finish without me"


def test_agents_are_listed_with_tool_schemas(admin: httpx.Client) -> None:
    agents = {a["name"]: a for a in admin.get("/v1/agents").json()["agents"]}
    assert set(agents) == {
        "echo",
        "slow_echo",
        "slower_echo",
        "calc",
        "broken",
        "garbled",
        "sleepy",
        "crashy",
        "historian",
        "unstorable",
        "unaccountable",
    }
    assert agents["calc"]["tools"][0]["name"] == "add"
    assert agents["calc"]["tools"][0]["parameters"]["required"] == ["a", "b"]
    assert agents["sleepy"]["description"].startswith("Takes longer")


def test_401_without_or_with_a_bad_key(server: ServerProcess) -> None:
    missing = httpx.post(f"{server.url}/v1/agents/echo/invoke", json={"input": "x"})
    assert missing.status_code == 401 and error_of(missing)["code"] == "unauthorized"
    assert missing.headers["www-authenticate"] == "Bearer"
    bad = httpx.get(f"{server.url}/v1/runs", headers={"Authorization": "Bearer sk_shp_nope"})
    assert bad.status_code == 401 and "invalid" in error_of(bad)["message"]
    basic = httpx.get(f"{server.url}/v1/runs", headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401


def test_403_without_the_scope(server: ServerProcess) -> None:
    reader = make_key(server, "default", "read")
    headers = {"Authorization": f"Bearer {reader}"}
    reply = httpx.post(f"{server.url}/v1/agents/echo/invoke", json={"input": "x"}, headers=headers)
    assert reply.status_code == 403 and error_of(reply)["code"] == "forbidden"
    assert httpx.get(f"{server.url}/v1/runs", headers=headers).status_code == 200


def test_404_unknown_agent_run_and_route(admin: httpx.Client) -> None:
    agent = admin.post("/v1/agents/nobody/invoke", json={"input": "x"})
    assert agent.status_code == 404 and error_of(agent)["code"] == "agent_not_found"
    run = admin.get("/v1/runs/run_doesnotexist")
    assert run.status_code == 404 and error_of(run)["code"] == "run_not_found"
    assert admin.get("/v1/runs/run_doesnotexist/events").status_code == 404
    route = admin.get("/v1/nothing-here")
    assert route.status_code == 404 and error_of(route)["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["body.input"]),
        ({"input": ""}, ["body.input"]),
        ({"input": "x", "extra": 1}, ["body.extra"]),
        ({"input": [{"role": "robot", "content": "x"}]}, ["body.input"]),
        ({"input": "x", "metadata": "not-a-dict"}, ["body.metadata"]),
    ],
)
def test_422_names_the_bad_fields(admin: httpx.Client, body: dict, fields: list[str]) -> None:
    reply = admin.post("/v1/agents/echo/invoke", json=body)
    assert reply.status_code == 422
    error = error_of(reply)
    assert error["code"] == "invalid_input"
    for field in fields:
        assert field in error["message"]


def test_400_on_a_body_that_is_not_json(admin: httpx.Client) -> None:
    reply = admin.post(
        "/v1/agents/echo/invoke", content=b"{oops", headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 400 and error_of(reply)["code"] == "malformed_body"


def test_502_model_failure_is_recorded_as_failed(admin: httpx.Client) -> None:
    reply = admin.post("/v1/agents/broken/invoke", json={"input": "x"})
    assert reply.status_code == 502
    error = error_of(reply)
    assert (error["code"], error["message"]) == ("model_error", "provider is down")
    failed = admin.get("/v1/runs", params={"agent": "broken", "status": "failed"}).json()["runs"]
    assert failed and failed[0]["error"]["code"] == "model_error"
    # the answer names the run and its trace, to look them up
    assert error["details"] == {"run_id": failed[0]["id"], "trace_id": failed[0]["trace_id"]}
    events = admin.get(f"/v1/runs/{failed[0]['id']}/events").json()["events"]
    assert events[-1]["type"] == "run.failed"


def test_504_run_timeout_is_recorded(admin: httpx.Client) -> None:
    reply = admin.post("/v1/agents/sleepy/invoke", json={"input": "x"})
    assert reply.status_code == 504 and error_of(reply)["code"] == "run_timeout"
    runs = admin.get("/v1/runs", params={"agent": "sleepy"}).json()["runs"]
    assert runs[0]["status"] == "failed" and runs[0]["error"]["code"] == "run_timeout"


def test_500_agent_bug_leaks_no_detail(admin: httpx.Client) -> None:
    reply = admin.post("/v1/agents/crashy/invoke", json={"input": "x"})
    assert reply.status_code == 500
    error = error_of(reply)
    assert error["code"] == "run_failed" and "ValueError" in error["message"]
    assert "secret internal detail" not in reply.text
    runs = admin.get("/v1/runs", params={"agent": "crashy"}).json()["runs"]
    assert runs[0]["status"] == "failed"
    events = admin.get(f"/v1/runs/{runs[0]['id']}/events").text
    assert "secret internal detail" not in str(runs) + events


def test_sse_ends_with_run_failed_when_the_model_fails(admin: httpx.Client) -> None:
    with admin.stream(
        "POST",
        "/v1/agents/broken/invoke",
        json={"input": "x"},
        headers={"Accept": "text/event-stream"},
    ) as reply:
        assert reply.status_code == 200
        frames = [json.loads(line[6:]) for line in reply.iter_lines() if line.startswith("data: ")]
    assert frames[-1]["type"] == "run.failed"
    assert frames[-1]["data"]["error"]["code"] == "model_error"
    unknown = admin.post(
        "/v1/agents/nobody/invoke", json={"input": "x"}, headers={"Accept": "text/event-stream"}
    )
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "agent_not_found"


def test_tenants_never_see_each_other(admin: httpx.Client, acme: httpx.Client) -> None:
    mine = acme.post("/v1/agents/echo/invoke", json={"input": "acme secret"}).json()["run_id"]
    theirs = admin.post("/v1/agents/echo/invoke", json={"input": "default secret"}).json()["run_id"]

    assert acme.get(f"/v1/runs/{theirs}").status_code == 404
    assert acme.get(f"/v1/runs/{theirs}/events").status_code == 404
    assert admin.get(f"/v1/runs/{mine}").status_code == 404
    acme_ids = {r["id"] for r in acme.get("/v1/runs", params={"limit": 500}).json()["runs"]}
    assert mine in acme_ids and theirs not in acme_ids
    assert acme.get(f"/v1/runs/{mine}").json()["tenant_id"] == "acme"


def test_runs_page_newest_first(acme: httpx.Client) -> None:
    ids = [
        acme.post("/v1/agents/echo/invoke", json={"input": f"n{i}"}).json()["run_id"]
        for i in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"agent": "echo", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = acme.get("/v1/runs", params=params).json()
        seen.extend(r["id"] for r in page["runs"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen[:5] == list(reversed(ids))
    assert len(seen) == len(set(seen))


def test_revoked_key_is_refused(server: ServerProcess) -> None:
    key = make_key(server, "temp", "read")
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{server.url}/v1/runs", headers=headers).status_code == 200  # now cached
    key_id = server.cli("keys", "list", "--tenant", "temp").stdout.split()[0]
    assert server.cli("keys", "revoke", key_id).returncode == 0
    assert "revoked" in server.cli("keys", "list", "--tenant", "temp").stdout
    time.sleep(1.2)  # the server trusts a verified key for SHIPYARD_KEY_CACHE_S (1 s here)
    reply = httpx.get(f"{server.url}/v1/runs", headers=headers)
    assert reply.status_code == 401


def test_openapi_docs_are_served(server: ServerProcess) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v1/agents/{agent}/invoke" in spec["paths"]
    assert httpx.get(f"{server.url}/docs").status_code == 200
