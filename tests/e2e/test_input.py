"""Input the stores cannot hold is refused at the edge (422 naming the field), on SQLite and on
PostgreSQL records, and nothing the API accepts can break a listing afterwards."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.servers import ServerProcess

LISTS = ("/v1/runs", "/v1/tasks", "/v1/sessions")


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    env = {"SHIPYARD_KEY_CACHE_S": "1"}
    if request.param == "postgres":
        env["SHIPYARD_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    proc = ServerProcess(
        home=tmp_path_factory.mktemp("home"), app="tests.e2e.apps:app", env_extra=env
    ).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        yield client


def refused(reply: httpx.Response, field: str) -> None:
    """422 ``invalid_input`` naming ``field``, and nothing of a driver in it."""
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid_input", error
    assert field in error["message"], error
    assert "asyncpg" not in reply.text and "sqlite" not in reply.text.lower()


def post(client: httpx.Client, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    """JSON as any client may spell it: with ``\\u`` escapes (httpx would refuse to encode a lone
    surrogate)."""
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return client.post(path, content=json.dumps(body), headers=headers, **kwargs)


def lists_still_work(client: httpx.Client) -> None:
    for path in LISTS:
        reply = client.get(path, params={"limit": 500})
        assert reply.status_code == 200, (path, reply.text)


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


BAD_TEXT = ["\ud800", "a\u0000b", "\udfff tail"]


@pytest.mark.parametrize("text", BAD_TEXT)
def test_unstorable_text_in_an_input_is_refused(client: httpx.Client, text: str) -> None:
    refused(post(client, "/v1/agents/echo/invoke", {"input": text}), "body.input")
    messages = [{"role": "user", "content": text}]
    refused(post(client, "/v1/agents/echo/invoke", {"input": messages}), "body.input")
    sse = post(
        client, "/v1/agents/echo/invoke", {"input": text}, headers={"Accept": "text/event-stream"}
    )
    refused(sse, "body.input")
    session = post(client, "/v1/sessions", {"agent": "echo"}).json()["id"]
    refused(post(client, f"/v1/sessions/{session}/turns", {"input": text}), "body.input")
    refused(post(client, "/v1/tasks", {"agent": "echo", "input": text}), "body.input")
    lists_still_work(client)


@pytest.mark.parametrize("text", BAD_TEXT)
def test_unstorable_text_in_metadata_is_refused(client: httpx.Client, text: str) -> None:
    for metadata in ({"k": text}, {text: 1}, {"k": [{"deeper": text}]}):
        invoke = post(client, "/v1/agents/echo/invoke", {"input": "x", "metadata": metadata})
        refused(invoke, "body.metadata")
        task = {"agent": "echo", "input": "x", "metadata": metadata}
        refused(post(client, "/v1/tasks", task), "body.metadata")
        session = {"agent": "echo", "metadata": metadata}
        refused(post(client, "/v1/sessions", session), "body.metadata")
    lists_still_work(client)


@pytest.mark.parametrize("text", BAD_TEXT)
def test_unstorable_text_in_ids_keys_and_filters_is_refused(
    client: httpx.Client, text: str
) -> None:
    task = {"agent": "echo", "input": "x"}
    refused(post(client, "/v1/tasks", {**task, "idempotency_key": text}), "idempotency_key")
    refused(post(client, "/v1/tasks", {**task, "session_id": text}), "body.session_id")
    refused(post(client, "/v1/tasks", {**task, "agent": text}), "body.agent")
    refused(post(client, "/v1/sessions", {"agent": text}), "body.agent")


def test_nul_in_filters_and_cursors_is_refused(client: httpx.Client) -> None:
    """(A lone surrogate cannot travel in a URL: its UTF-8 bytes are decoded as U+FFFD.)"""
    for path in LISTS:
        for name in ("agent", "cursor"):
            refused(client.get(path, params={name: "a\x00"}), f"query.{name}")
    refused(client.get("/v1/runs", params={"session_id": "\x00"}), "query.session_id")
    assert client.get("/v1/runs", params={"agent": "\ud7ff\ue000"}).status_code == 200


def test_nul_in_path_ids_is_refused(client: httpx.Client) -> None:
    for path in (
        "/v1/runs/%00",
        "/v1/runs/%00/events",
        "/v1/tasks/a%00b",
        "/v1/tasks/%00/events",
        "/v1/sessions/%00",
    ):
        field = (
            "path."
            + {"runs": "run_id", "tasks": "task_id", "sessions": "session_id"}[path.split("/")[2]]
        )
        refused(client.get(path), field)
    refused(client.post("/v1/tasks/%00/cancel"), "path.task_id")
    refused(client.delete("/v1/sessions/%00"), "path.session_id")
    refused(post(client, "/v1/sessions/%00/turns", {"input": "x"}), "path.session_id")
    refused(post(client, "/v1/agents/%00/invoke", {"input": "x"}), "path.agent")


def test_numbers_beyond_their_columns_are_refused(client: httpx.Client) -> None:
    run_id = post(client, "/v1/agents/echo/invoke", {"input": "x"}).json()["run_id"]
    events = f"/v1/runs/{run_id}/events"
    refused(client.get(events, params={"after": 2**31}), "query.after")
    assert client.get(events, params={"after": 2**31 - 1}).json() == {"events": []}
    for seen in ("1e20", "inf", "nan"):
        refused(client.get("/v1/workers", params={"seen_within_s": seen}), "seen_within_s")
    assert client.get("/v1/workers", params={"seen_within_s": 3600}).status_code == 200
    body = b'{"input": "x", "metadata": {"n": NaN}}'
    nan = client.post(
        "/v1/agents/echo/invoke", content=body, headers={"Content-Type": "application/json"}
    )
    refused(nan, "body.metadata")
    huge = {"input": "x", "metadata": {"n": 2**64}}
    refused(post(client, "/v1/agents/echo/invoke", huge), "body.metadata")
    task = post(client, "/v1/tasks", {"agent": "echo", "input": "x"}).json()["task_id"]
    stream = client.get(f"/v1/tasks/{task}/events", headers={"Last-Event-ID": f"1.{2**31}"})
    refused(stream, "Last-Event-ID")
    lists_still_work(client)


def test_metadata_depth_and_size_are_bounded(client: httpx.Client) -> None:
    for levels in (33, 256, 300):
        body = {"input": "x", "metadata": deep(levels)}
        refused(post(client, "/v1/agents/echo/invoke", body), "body.metadata")
        task = {"agent": "echo", "input": "x", "metadata": deep(levels)}
        refused(post(client, "/v1/tasks", task), "body.metadata")
        session = {"agent": "echo", "metadata": deep(levels)}
        refused(post(client, "/v1/sessions", session), "body.metadata")
    big = {"input": "x", "metadata": {"blob": "x" * (64 * 1024)}}
    refused(post(client, "/v1/agents/echo/invoke", big), "body.metadata")
    ok = {"input": "x", "metadata": {**deep(32), "blob": "x" * 60_000}}
    reply = post(client, "/v1/agents/echo/invoke", ok)
    assert reply.status_code == 200, reply.text
    assert client.get(f"/v1/runs/{reply.json()['run_id']}").json()["metadata"] == ok["metadata"]
    lists_still_work(client)


def test_a_body_that_is_not_json_is_400_malformed_body(client: httpx.Client) -> None:
    headers = {"Content-Type": "application/json"}
    for body in (b"{oops", b'{"input": "\xff"}'):
        reply = client.post("/v1/agents/echo/invoke", content=body, headers=headers)
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["code"] == "malformed_body"


def test_a_500_keeps_the_connection_open(client: httpx.Client) -> None:
    """The ``unaccountable`` agent breaks its run's accounting: an error no route expects."""

    def peer(reply: httpx.Response) -> object:
        return reply.extensions["network_stream"].get_extra_info("client_addr")

    before = client.get("/healthz")
    failed = post(client, "/v1/agents/unaccountable/invoke", {"input": "x"})
    assert failed.status_code == 500
    assert failed.json() == {
        "error": {"code": "internal_error", "message": "internal error; see the server log"}
    }
    after = client.get("/healthz")
    assert after.status_code == 200
    assert peer(before) == peer(failed) == peer(after)  # one connection, kept alive


def test_a_reused_idempotency_key_with_another_body_is_409(client: httpx.Client) -> None:
    key = f"order-{datetime.now(UTC).timestamp()}"
    deadline = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    first = {
        "agent": "echo",
        "input": [{"role": "user", "content": "hi"}],
        "metadata": {"n": 1, "nested": {"x": [1.5, "y"]}},
        "idempotency_key": key,
        "deadline": deadline,
    }
    created = post(client, "/v1/tasks", first)
    assert created.status_code == 202, created.text
    again = post(client, "/v1/tasks", first)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["task_id"] == created.json()["task_id"]
    same_instant = datetime.fromisoformat(deadline).astimezone(timezone(timedelta(hours=2)))
    shifted = post(client, "/v1/tasks", {**first, "deadline": same_instant.isoformat()})
    assert shifted.status_code == 202, shifted.text
    for change in ({"input": "other"}, {"metadata": {"n": 2}}, {"priority": 5}):
        conflict = post(client, "/v1/tasks", {**first, **change})
        assert conflict.status_code == 409, conflict.text
        error = conflict.json()["error"]
        assert error["code"] == "idempotency_conflict"
        assert error["details"]["fields"] == list(change)
        assert error["details"]["task_id"] == created.json()["task_id"]


def test_a_deadline_already_past_is_refused(client: httpx.Client) -> None:
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    refused(post(client, "/v1/tasks", {"agent": "echo", "input": "x", "deadline": past}),
            "body.deadline")  # fmt: skip
    far = {"agent": "echo", "input": "x", "deadline": "9999-12-31T23:00:00-05:00"}
    refused(post(client, "/v1/tasks", far), "body.deadline")


def test_docs_work_offline_with_an_authorize_button(server: ServerProcess) -> None:
    page = httpx.get(f"{server.url}/docs").text
    assert "cdn" not in page.lower()
    assets = [part.split('"')[1] for part in page.split("=")[1:] if part.startswith('"/static')]
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets), page
    for asset in assets:
        assert httpx.get(f"{server.url}{asset}").status_code == 200, asset
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["bearer"]["description"],
    }
    assert spec["paths"]["/v1/runs"]["get"]["security"] == [{"bearer": []}]


NEVER_NOT_FOUND = {("delete", "/v1/subjects/{subject_id}"), ("put", "/v1/budgets/{tenant_id}")}
"""Erasure is idempotent (a subject nothing is known of gets a receipt of zeros), and a tenant's
budgets are put whether or not it has a policy yet: neither answers 404."""


def test_every_operation_documents_its_error_codes(server: ServerProcess) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    for path, operations in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert {"401", "403", "422", "500", "503"} <= codes, (method, path, codes)
            if "requestBody" in operation:
                assert "400" in codes, (method, path)
            if "{" in path and (method, path) not in NEVER_NOT_FOUND:
                assert "404" in codes, (method, path)
    assert "409" in spec["paths"]["/v1/tasks"]["post"]["responses"]


@pytest.mark.parametrize("text", BAD_TEXT)
async def test_a_websocket_turn_with_unstorable_text_is_an_invalid_frame(
    server: ServerProcess, client: httpx.Client, text: str
) -> None:
    session = post(client, "/v1/sessions", {"agent": "echo"}).json()["id"]
    url = server.url.replace("http", "ws") + f"/v1/sessions/{session}/ws"
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    async with connect(url, additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "turn", "input": text}))
        reply = json.loads(await ws.recv())
        assert reply["type"] == "error" and reply["error"]["code"] == "invalid_frame"
        # (the frames' JSON parser refuses a lone surrogate itself; NUL is refused as input)
        assert reply["error"]["details"][0]["field"] in ("", "turn.input"), reply
        await ws.send(json.dumps({"type": "turn", "input": "fine"}))
        kinds = []
        while not kinds or kinds[-1] != "turn.done":
            kinds.append(json.loads(await ws.recv())["type"])
    detail = await asyncio.to_thread(client.get, f"/v1/sessions/{session}")
    assert detail.json()["turns"] == 1
    await asyncio.to_thread(lists_still_work, client)


UNSTORABLE_OUTPUT = "half of a pair: \ufffd"
"""The ``unstorable`` agent's answer (``"half of a pair: \\ud800"``) as it is served and stored."""


def sse_frames(client: httpx.Client, path: str, body: Any) -> list[dict[str, Any]]:
    headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}
    with client.stream("POST", path, content=json.dumps(body), headers=headers) as reply:
        assert reply.status_code == 200
        return [json.loads(line[6:]) for line in reply.iter_lines() if line.startswith("data: ")]


def recorded(client: httpx.Client, run_id: str) -> None:
    """The run's record and its events hold what the caller was answered."""
    run = client.get(f"/v1/runs/{run_id}").json()
    assert run["status"] == "succeeded" and run["output"] == UNSTORABLE_OUTPUT, run
    assert "unrecordable" not in run["metadata"], run
    events = client.get(f"/v1/runs/{run_id}/events").json()["events"]
    assert events[-1]["type"] == "run.completed", events
    assert events[-1]["data"]["output"] == UNSTORABLE_OUTPUT


def test_an_answer_with_a_lone_surrogate_is_served_and_stored_with_u_fffd(
    client: httpx.Client,
) -> None:
    """A lone surrogate an agent or a model produces is no character: it becomes U+FFFD in the
    answer (JSON and SSE), in the session's history and in the records alike."""
    reply = post(client, "/v1/agents/unstorable/invoke", {"input": "x"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["output"] == UNSTORABLE_OUTPUT
    recorded(client, reply.json()["run_id"])
    frames = sse_frames(client, "/v1/agents/unstorable/invoke", {"input": "x"})
    assert [f["type"] for f in frames] == ["run.started", "run.completed"], frames
    assert frames[-1]["data"]["output"] == UNSTORABLE_OUTPUT
    recorded(client, frames[-1]["run_id"])
    session = post(client, "/v1/sessions", {"agent": "unstorable"}).json()["id"]
    turn = post(client, f"/v1/sessions/{session}/turns", {"input": "x"})
    assert turn.status_code == 200, turn.text
    assert turn.json()["output"] == UNSTORABLE_OUTPUT
    recorded(client, turn.json()["run_id"])
    history = client.get(f"/v1/sessions/{session}").json()["history"]
    assert history[-1]["content"] == UNSTORABLE_OUTPUT, history
    lists_still_work(client)


async def test_a_websocket_turn_answering_a_lone_surrogate_streams_u_fffd(
    server: ServerProcess, client: httpx.Client
) -> None:
    session = post(client, "/v1/sessions", {"agent": "unstorable"}).json()["id"]
    url = server.url.replace("http", "ws") + f"/v1/sessions/{session}/ws"
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    async with connect(url, additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "turn", "input": "x"}))
        frames = []
        while not frames or frames[-1]["type"] not in ("turn.done", "error"):
            frames.append(json.loads(await ws.recv()))
    assert frames[-1]["type"] == "turn.done" and frames[-1]["status"] == "succeeded", frames
    [completed] = [f["event"] for f in frames if f["type"] == "event"][-1:]
    assert completed["type"] == "run.completed", frames
    assert completed["data"]["output"] == UNSTORABLE_OUTPUT
    await asyncio.to_thread(recorded, client, completed["run_id"])


def test_an_error_with_a_lone_surrogate_is_answered_with_u_fffd(client: httpx.Client) -> None:
    """The ``garbled`` agent's model fails with a message holding a lone surrogate: the error
    is answered (502 ``model_error``) and recorded with U+FFFD in its place, never a 500."""
    garbled = "provider says \ufffd"
    reply = post(client, "/v1/agents/garbled/invoke", {"input": "x"})
    assert reply.status_code == 502, reply.text
    error = reply.json()["error"]
    assert (error["code"], error["message"]) == ("model_error", garbled)
    run = client.get(f"/v1/runs/{error['details']['run_id']}").json()
    assert run["status"] == "failed" and run["error"]["message"] == garbled, run
    frames = sse_frames(client, "/v1/agents/garbled/invoke", {"input": "x"})
    assert frames[-1]["type"] == "run.failed", frames
    assert frames[-1]["data"]["error"]["message"] == garbled
