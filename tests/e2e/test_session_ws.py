"""``WS /v1/sessions/{id}/ws`` end to end, against a real server process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from shipyard.api.fanout import REPLAY_FRAMES
from tests.servers import ServerProcess

Frame = dict[str, Any]
RECV_TIMEOUT_S = 30  # only so that a bug fails the test instead of hanging it


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        home=tmp_path_factory.mktemp("home"),
        app="tests.e2e.apps:app",
        env_extra={"SHIPYARD_RUN_TIMEOUT_S": "2"},
    ).start()
    yield proc
    proc.stop()


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def reader_key(server: ServerProcess) -> str:
    return server.cli("keys", "create", "--tenant", "default", "--scopes", "read").stdout.strip()


@pytest.fixture(scope="module")
def other_tenant_key(server: ServerProcess) -> str:
    return server.cli("keys", "create", "--tenant", "other", "--scopes", "invoke").stdout.strip()


async def new_session(client: httpx.AsyncClient, agent: str) -> str:
    reply = await client.post("/v1/sessions", json={"agent": agent})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


@asynccontextmanager
async def ws(
    server: ServerProcess, session: str, *, key: str | None = "admin", query: str = ""
) -> AsyncIterator[ClientConnection]:
    url = f"ws://127.0.0.1:{server.port}/v1/sessions/{session}/ws{query}"
    secret = server.admin_key if key == "admin" else key
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    async with connect(url, additional_headers=headers) as conn:
        yield conn


async def recv(conn: ClientConnection) -> Frame:
    frame: Frame = json.loads(await asyncio.wait_for(conn.recv(), RECV_TIMEOUT_S))
    return frame


async def until_done(conn: ClientConnection) -> list[Frame]:
    """Frames up to and including the next ``turn.done``."""
    frames = [await recv(conn)]
    while frames[-1]["type"] != "turn.done":
        frames.append(await recv(conn))
    return frames


async def turn(conn: ClientConnection, input: object) -> list[Frame]:
    await conn.send(json.dumps({"type": "turn", "input": input}))
    return await until_done(conn)


async def closed_with(conn: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        await recv(conn)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


def kinds(frames: list[Frame]) -> list[str]:
    return [f["event"]["type"] if f["type"] == "event" else f["type"] for f in frames]


async def test_a_turn_streams_its_events_and_is_kept_in_the_history(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    session = await new_session(client, "echo")
    async with ws(server, session) as conn:
        frames = await turn(conn, "hello there")

    assert kinds(frames) == [
        "run.started",
        "llm.request",
        "llm.delta",
        "llm.delta",
        "llm.delta",
        "llm.response",
        "run.completed",
        "turn.done",
    ]
    ids = [f["id"] for f in frames]
    assert ids == list(range(ids[0], ids[0] + len(frames)))
    events = [f["event"] for f in frames if f["type"] == "event"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["session_id"] for e in events} == {session}
    assert "".join(e["data"]["text"] for e in events if e["type"] == "llm.delta") == (
        "echo: hello there"
    )
    run_id = events[0]["run_id"]
    assert frames[-1] == {
        "type": "turn.done",
        "id": ids[-1],
        "run_id": run_id,
        "status": "succeeded",
    }
    assert events[-1]["data"]["output"] == "echo: hello there"

    detail = (await client.get(f"/v1/sessions/{session}")).json()
    assert [(m["role"], m["content"]) for m in detail["history"]] == [
        ("user", "hello there"),
        ("assistant", "echo: hello there"),
    ]
    assert (await client.get(f"/v1/runs/{run_id}")).json()["status"] == "succeeded"


async def test_turns_on_one_connection_share_the_history(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    session = await new_session(client, "historian")
    async with ws(server, session) as conn:
        first = await turn(conn, "one")
        second = await turn(conn, [{"role": "user", "content": "two"}])
    assert first[-2]["event"]["data"]["output"] == "1 messages so far"
    assert second[-2]["event"]["data"]["output"] == "3 messages so far"
    assert second[0]["id"] > first[-1]["id"]


async def test_tool_calls_are_streamed(server: ServerProcess, client: httpx.AsyncClient) -> None:
    session = await new_session(client, "calc")
    async with ws(server, session) as conn:
        frames = await turn(conn, "2+3?")
    events = [f["event"] for f in frames if f["type"] == "event"]
    call = next(e for e in events if e["type"] == "tool.call")
    result = next(e for e in events if e["type"] == "tool.result")
    assert call["data"]["name"] == "add" and json.loads(call["data"]["arguments"]) == {
        "a": 2,
        "b": 3,
    }
    assert result["data"]["ok"] is True and result["data"]["output"] == "5"
    assert events.index(call) < events.index(result)
    assert kinds(frames)[-2:] == ["run.completed", "turn.done"]
    assert events[-1]["data"]["output"] == "It is 5."


async def test_a_model_failure_is_a_run_failed_frame(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    session = await new_session(client, "broken")
    async with ws(server, session) as conn:
        frames = await turn(conn, "x")
        assert kinds(frames)[-2:] == ["run.failed", "turn.done"]
        assert frames[-2]["event"]["data"]["error"]["code"] == "model_error"
        assert frames[-1]["status"] == "failed"
        assert "error" not in kinds(frames)
        await conn.send(json.dumps({"type": "ping"}))
        assert await recv(conn) == {"type": "pong"}  # still open
    assert (await client.get(f"/v1/sessions/{session}")).json()["history"] == []


async def test_reconnecting_with_last_event_id_replays_exactly_what_was_missed(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    session = await new_session(client, "slow_echo")
    async with ws(server, session) as watcher:  # sees everything, as a reference
        async with ws(server, session) as first:
            await first.send(json.dumps({"type": "turn", "input": "are you there"}))
            seen = [await recv(first)]  # run.started; the model then takes 300 ms
        assert kinds(seen) == ["run.started"]
        # Whether the turn has finished by now or not, the replay and the live frames together
        # must be exactly the frames after the last one seen, once each, in order.
        async with ws(server, session, query=f"?last_event_id={seen[-1]['id']}") as second:
            rest = await until_done(second)
        everything = await until_done(watcher)

    assert seen + rest == everything
    assert kinds(rest)[-2:] == ["run.completed", "turn.done"]
    assert rest[-2]["event"]["data"]["output"] == "echo: are you there"


async def test_a_resume_frame_replays_too(server: ServerProcess, client: httpx.AsyncClient) -> None:
    session = await new_session(client, "echo")
    async with ws(server, session) as conn:
        frames = await turn(conn, "again")
        await conn.send(json.dumps({"type": "resume", "last_event_id": frames[2]["id"]}))
        assert await until_done(conn) == frames[3:]
        await conn.send(json.dumps({"type": "ping"}))
        assert await recv(conn) == {"type": "pong"}  # nothing sent twice before it


async def test_an_id_this_server_does_not_hold_is_a_replay_gap(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    session = await new_session(client, "echo")
    async with ws(server, session) as conn:
        frames = await turn(conn, "hi")
    async with ws(server, session, query="?last_event_id=1") as conn:
        gap = await recv(conn)
        assert gap["type"] == "error" and gap["error"]["code"] == "replay_gap"
        assert "/v1/runs/" in gap["error"]["message"]
        assert await until_done(conn) == frames  # then everything it does hold


async def test_malformed_frames_get_error_frames_and_the_connection_stays(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    session = await new_session(client, "echo")
    bad: list[str | bytes] = [
        "not json",
        json.dumps({"type": "dance"}),
        json.dumps({"type": "turn"}),
        json.dumps({"type": "turn", "input": ""}),
        json.dumps([1, 2]),
        b"\x00binary",
    ]
    async with ws(server, session) as conn:
        for frame in bad:
            await conn.send(frame)
            reply = await recv(conn)
            assert reply["type"] == "error" and "id" not in reply, frame
            assert reply["error"]["code"] == "invalid_frame", frame
        frames = await turn(conn, "still here")
        assert frames[-2]["event"]["data"]["output"] == "echo: still here"

    async with ws(server, session) as conn:
        await conn.send(json.dumps({"type": "turn"}))
        missing = (await recv(conn))["error"]
        assert "input" in missing["message"] and missing["details"][0]["type"] == "missing"
        await conn.send(json.dumps({"type": "dance"}))
        assert "dance" in (await recv(conn))["error"]["message"]


async def test_ping_gets_pong(server: ServerProcess, client: httpx.AsyncClient) -> None:
    session = await new_session(client, "echo")
    async with ws(server, session) as conn:
        for _ in range(3):
            await conn.send(json.dumps({"type": "ping"}))
            assert await recv(conn) == {"type": "pong"}


@pytest.mark.parametrize("key", [None, "sk_shp_not_a_key"])
async def test_a_bad_or_missing_key_is_refused(
    server: ServerProcess, client: httpx.AsyncClient, key: str | None
) -> None:
    session = await new_session(client, "echo")
    async with ws(server, session, key=key) as conn:
        error = await recv(conn)
        assert error["type"] == "error" and error["error"]["code"] == "unauthorized"
        code, reason = await closed_with(conn)
    assert code == 4401 and reason


async def test_a_browser_key_in_the_query_and_scopes(
    server: ServerProcess, client: httpx.AsyncClient, reader_key: str
) -> None:
    session = await new_session(client, "echo")
    async with ws(server, session, key=None, query=f"?access_token={server.admin_key}") as conn:
        await conn.send(json.dumps({"type": "ping"}))
        assert await recv(conn) == {"type": "pong"}

    async with ws(server, session, key=reader_key) as conn:
        assert (await recv(conn))["error"]["code"] == "forbidden"
        assert (await closed_with(conn))[0] == 4403


async def test_an_unknown_or_foreign_session_is_refused(
    server: ServerProcess, client: httpx.AsyncClient, other_tenant_key: str
) -> None:
    async with ws(server, "ses_nope") as conn:
        assert (await recv(conn))["error"]["code"] == "session_not_found"
        assert (await closed_with(conn))[0] == 4404

    session = await new_session(client, "echo")
    async with ws(server, session, key=other_tenant_key) as conn:
        assert (await recv(conn))["error"]["code"] == "session_not_found"
        assert (await closed_with(conn))[0] == 4404


async def test_a_second_turn_meanwhile_is_refused_on_its_connection_only(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    session = await new_session(client, "sleepy")  # outlives the 2 s run timeout set above
    async with ws(server, session) as first, ws(server, session) as second:
        await first.send(json.dumps({"type": "turn", "input": "one"}))
        assert kinds([await recv(first)]) == ["run.started"]
        assert kinds([await recv(second)]) == ["run.started"]  # every connection sees the turn

        refused = await turn(second, "two")
        assert kinds(refused) == ["error", "turn.done"]
        assert refused[0]["error"]["code"] == "session_busy" and "id" not in refused[0]
        assert refused[1] == {"type": "turn.done", "run_id": None, "status": "error"}

        rest = await until_done(first)
        assert kinds(rest) == ["run.failed", "turn.done"]
        assert rest[0]["event"]["data"]["error"]["code"] == "run_timeout"
        assert await until_done(second) == rest  # and not the refusal: that was second's own


async def test_a_bad_last_event_id_is_refused(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    session = await new_session(client, "echo")
    async with ws(server, session, query="?last_event_id=abc") as conn:
        assert (await recv(conn))["error"]["code"] == "invalid_input"
        assert (await closed_with(conn))[0] == 4422


async def test_a_burst_that_fits_the_buffer_reaches_a_client_that_reads(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    words = REPLAY_FRAMES - 100  # the echo model yields all its deltas without pausing
    session = await new_session(client, "echo")
    async with ws(server, session) as conn:
        frames = await turn(conn, " ".join(["w"] * words))
    assert kinds(frames).count("llm.delta") == words + 1  # "echo:" too
    assert kinds(frames)[-2:] == ["run.completed", "turn.done"]


async def test_a_client_left_behind_by_the_buffer_is_closed_and_can_catch_up(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    words = REPLAY_FRAMES * 2  # more frames at once than the buffer holds: some are gone
    session = await new_session(client, "echo")
    async with ws(server, session) as conn:
        await conn.send(json.dumps({"type": "turn", "input": " ".join(["w"] * words)}))
        code, reason = await closed_with(conn)
    assert code == 1013 and "too slow" in reason

    # The turn goes on without the client. Reconnecting says what is gone, then sends what the
    # buffer holds and what follows, whether or not the turn has finished by then.
    async with ws(server, session, query="?last_event_id=1") as conn:
        gap = await recv(conn)
        assert gap["error"]["code"] == "replay_gap"
        rest = await until_done(conn)
    ids = [f["id"] for f in rest]
    # no hole after the gap, and the gap is real: the run's first events are gone. (No bound on
    # len(rest): the frames a turn still going makes after the reconnect follow the buffer's.)
    assert ids == list(range(ids[0], ids[0] + len(rest))) and rest[0]["event"]["seq"] > 1
    assert kinds(rest)[-2:] == ["run.completed", "turn.done"]
    assert rest[-1]["status"] == "succeeded"
    assert (await client.get(f"/v1/sessions/{session}")).json()["turns"] == 1
    run_id = rest[-1]["run_id"]
    recorded = (await client.get(f"/v1/runs/{run_id}/events")).json()["events"]
    assert [e["type"] for e in recorded][-2:] == ["llm.response", "run.completed"]


async def test_a_turn_on_a_session_deleted_meanwhile_is_refused_then_closed(
    server: ServerProcess, client: httpx.AsyncClient
) -> None:
    session = await new_session(client, "echo")
    async with ws(server, session) as conn:
        assert (await client.delete(f"/v1/sessions/{session}")).status_code == 204
        refused = await turn(conn, "anyone?")
        assert kinds(refused) == ["error", "turn.done"]
        assert refused[0]["error"]["code"] == "session_not_found"
        assert (await closed_with(conn))[0] == 4404


async def test_each_connection_leaves_an_audit_row(
    server: ServerProcess, client: httpx.AsyncClient, reader_key: str
) -> None:
    """Accepted (101, with its key), refused for a bad key (401) or a missing scope (403); the
    key in ``?access_token=`` never reaches the row."""
    session = await new_session(client, "echo")
    async with ws(server, session, key=None, query="?access_token=sk_shp_not_a_key") as conn:
        assert (await recv(conn))["type"] == "error"
        assert (await closed_with(conn))[0] == 4401
    async with ws(server, session, key=reader_key) as conn:
        assert (await recv(conn))["type"] == "error"
        assert (await closed_with(conn))[0] == 4403
    async with ws(server, session) as conn:
        await turn(conn, "audited")
    action = "WEBSOCKET /v1/sessions/{session_id}/ws"
    rows: list[dict[str, Any]] = []
    for _ in range(100):  # the rows are written in batches, a moment after each connection
        reply = await client.get("/v1/audit", params={"action": action})
        rows = [r for r in reply.json()["entries"] if session in r["resource"]]
        if len(rows) == 3:
            break
        await asyncio.sleep(0.1)
    assert sorted((r["status"], r["outcome"], r["key_id"] is not None) for r in rows) == [
        (101, "ok", True),
        (401, "denied", False),
        (403, "denied", True),
    ]
    assert "sk_shp_" not in json.dumps(rows)
