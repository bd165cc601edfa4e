"""Sessions end to end: history across turns, one turn at a time, expiry, on SQLite and Redis."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import missing_service
from tests.servers import ServerProcess

REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_up() -> bool:
    try:
        import socket

        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module", params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    env = {"SHIPYARD_RUN_TIMEOUT_S": "5"}
    if request.param == "redis":
        if not redis_up():
            missing_service(f"Redis unreachable at {REDIS_URL}")
        env["SHIPYARD_STATE_URL"] = REDIS_URL
    proc = ServerProcess(
        home=tmp_path_factory.mktemp("home"), app="tests.e2e.apps:app", env_extra=env
    ).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as c:
        yield c


def new_session(client: httpx.Client, agent: str, **body: object) -> str:
    reply = client.post("/v1/sessions", json={"agent": agent, **body})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


def turn(client: httpx.Client, session: str, text: str) -> httpx.Response:
    return client.post(f"/v1/sessions/{session}/turns", json={"input": text})


def test_turns_see_the_history_written_before_them(client: httpx.Client) -> None:
    session = new_session(client, "historian", metadata={"user": "ada"})
    first = turn(client, session, "hello")
    second = turn(client, session, "again")
    assert first.json()["output"] == "1 messages so far"
    assert second.json()["output"] == "3 messages so far"  # user, assistant, user
    assert second.json()["session_id"] == session

    detail = client.get(f"/v1/sessions/{session}").json()
    assert detail["turns"] == 2 and detail["metadata"] == {"user": "ada"}
    assert [(m["role"], m["content"]) for m in detail["history"]] == [
        ("user", "hello"),
        ("assistant", "1 messages so far"),
        ("user", "again"),
        ("assistant", "3 messages so far"),
    ]
    runs = client.get("/v1/runs", params={"session_id": session}).json()["runs"]
    assert [r["id"] for r in runs] == [second.json()["run_id"], first.json()["run_id"]]


def test_tool_calls_and_results_are_kept_in_the_history(client: httpx.Client) -> None:
    session = new_session(client, "calc")
    assert turn(client, session, "2+3?").json()["output"] == "It is 5."
    roles = [m["role"] for m in client.get(f"/v1/sessions/{session}").json()["history"]]
    assert roles == ["user", "assistant", "tool", "assistant"]


def test_a_second_turn_meanwhile_is_refused(client: httpx.Client, server: ServerProcess) -> None:
    session = new_session(client, "slow_echo")
    results: list[httpx.Response] = []
    slow = threading.Thread(target=lambda: results.append(turn(client, session, "first")))
    slow.start()
    time.sleep(0.1)  # the first turn holds the session's lease (its model takes 300 ms)
    refused = turn(client, session, "second")
    slow.join()
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "session_busy"
    assert results[0].status_code == 200
    history = client.get(f"/v1/sessions/{session}").json()["history"]
    assert [m["content"] for m in history] == ["first", "echo: first"]


def test_enqueued_turns_are_kept_in_the_order_they_arrived(client: httpx.Client) -> None:
    """Five turns 0.3 s apart on an agent that takes a second: four wait together, and each
    runs in its turn (the waiters' backoff used to let the newest win: t0, t4, t1, t3, t2)."""
    session = new_session(client, "slower_echo", on_busy="enqueue")
    replies: dict[int, httpx.Response] = {}

    def send(n: int) -> None:
        replies[n] = turn(client, session, f"t{n}")

    threads = [threading.Thread(target=send, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
        time.sleep(0.3)
    for thread in threads:
        thread.join()
    assert [replies[n].status_code for n in range(5)] == [200] * 5
    history = client.get(f"/v1/sessions/{session}").json()["history"]
    assert [m["content"] for m in history[0::2]] == [f"t{n}" for n in range(5)]


def test_a_failed_turn_leaves_no_history(client: httpx.Client) -> None:
    session = new_session(client, "broken")
    assert turn(client, session, "x").status_code == 502
    detail = client.get(f"/v1/sessions/{session}").json()
    assert detail["history"] == [] and detail["turns"] == 0
    failed = client.get("/v1/runs", params={"session_id": session}).json()["runs"]
    assert failed[0]["status"] == "failed"


def test_idle_sessions_expire_but_their_turns_stay_recorded(client: httpx.Client) -> None:
    session = new_session(client, "echo", ttl_seconds=1.5)
    assert turn(client, session, "one").status_code == 200
    time.sleep(1.0)
    assert turn(client, session, "two").status_code == 200  # renews the TTL (sliding)
    time.sleep(1.0)  # 2 s after creation, 1 s after the last turn: still alive
    assert client.get(f"/v1/sessions/{session}").status_code == 200
    time.sleep(1.8)
    gone = client.get(f"/v1/sessions/{session}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "session_expired"
    again = turn(client, session, "three")
    assert again.status_code == 404 and again.json()["error"]["code"] == "session_expired"
    runs = client.get("/v1/runs", params={"session_id": session}).json()["runs"]
    assert [r["output"] for r in runs] == ["echo: two", "echo: one"]


def test_sessions_are_listed_deleted_and_kept_per_tenant(
    client: httpx.Client, server: ServerProcess
) -> None:
    session = new_session(client, "echo")
    listed = client.get("/v1/sessions", params={"agent": "echo", "limit": 500}).json()
    assert session in [s["id"] for s in listed["sessions"]]

    other_key = server.cli("keys", "create", "--tenant", "other", "--scopes", "invoke,read")
    other = {"Authorization": f"Bearer {other_key.stdout.strip()}"}
    for method, path in (("GET", ""), ("POST", "/turns"), ("DELETE", "")):
        reply = httpx.request(
            method, f"{server.url}/v1/sessions/{session}{path}", json={"input": "x"}, headers=other
        )
        assert reply.status_code == 404, (method, path, reply.text)

    assert client.delete(f"/v1/sessions/{session}").status_code == 204
    gone = client.get(f"/v1/sessions/{session}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "session_not_found"
    listed = client.get("/v1/sessions", params={"limit": 500}).json()
    assert session not in [s["id"] for s in listed["sessions"]]


def test_bad_requests(client: httpx.Client) -> None:
    unknown = client.post("/v1/sessions", json={"agent": "nobody"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "agent_not_found"
    bad_ttl = client.post("/v1/sessions", json={"agent": "echo", "ttl_seconds": -1})
    assert bad_ttl.status_code == 422 and "ttl_seconds" in bad_ttl.json()["error"]["message"]
    missing = turn(client, "ses_nope", "x")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "session_not_found"
    session = new_session(client, "echo")
    empty = client.post(f"/v1/sessions/{session}/turns", json={"input": ""})
    assert empty.status_code == 422


def test_a_turn_streams_over_sse(client: httpx.Client) -> None:
    session = new_session(client, "echo")
    with client.stream(
        "POST",
        f"/v1/sessions/{session}/turns",
        json={"input": "streamed"},
        headers={"Accept": "text/event-stream"},
    ) as reply:
        frames = [json.loads(line[6:]) for line in reply.iter_lines() if line.startswith("data: ")]
    assert frames[-1]["type"] == "run.completed" and frames[0]["session_id"] == session
    history = client.get(f"/v1/sessions/{session}").json()["history"]
    assert [m["content"] for m in history] == ["streamed", "echo: streamed"]
