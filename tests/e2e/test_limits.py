"""Request limits against a real server process, spoken to over raw sockets where a client
library would hide what matters: the answer comes before the body is sent, half-sent requests
are cut off, WebSocket messages are bounded, keys stay out of the log, webhooks stay outside."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.servers import ServerProcess

LIMIT = 64 * 1024
GUARD_S = 30.0  # only so that a bug fails the test instead of hanging it; never a measurement


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        home=tmp_path_factory.mktemp("home"),
        app="tests.e2e.apps:app",
        env_extra={
            "SHIPYARD_MAX_BODY_BYTES": str(LIMIT),
            "SHIPYARD_REQUEST_TIMEOUT_S": "1",
            "SHIPYARD_LOG_LEVEL": "info",
        },
    ).start()
    yield proc
    proc.stop()


def raw(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(GUARD_S)
    return sock


def head(path: str, *lines: str, key: str | None = None) -> bytes:
    auth = [f"Authorization: Bearer {key}"] if key else []
    text = "\r\n".join([f"POST {path} HTTP/1.1", "Host: test", *auth, *lines]) + "\r\n\r\n"
    return text.encode()


def read_reply(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed without an answer: {data!r}"
        data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = top.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed the connection (EOF or reset)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def code_of(body: bytes) -> str:
    return str(json.loads(body)["error"]["code"])


def test_a_body_over_the_limit_is_refused_before_it_is_sent(server: ServerProcess) -> None:
    with raw(server) as sock:
        sock.sendall(head("/v1/tasks", f"Content-Length: {LIMIT + 1}", key=server.admin_key))
        status, headers, body = read_reply(sock)  # not one byte of the body sent
        assert status == 413 and code_of(body) == "payload_too_large"
        assert headers["connection"] == "close"
        assert closed_by_server(sock)


def test_a_chunked_body_is_cut_off_at_the_limit(server: ServerProcess) -> None:
    chunk = b"x" * 16384
    with raw(server) as sock:
        sock.sendall(head("/v1/tasks", "Transfer-Encoding: chunked", key=server.admin_key))
        for _ in range(LIMIT // len(chunk) + 1):  # one chunk over, and no final chunk
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        status, _, body = read_reply(sock)
        assert status == 413 and code_of(body) == "payload_too_large"
        assert closed_by_server(sock)


def test_a_stranger_is_refused_before_the_body(server: ServerProcess) -> None:
    with raw(server) as sock:
        sock.sendall(head("/v1/agents/echo/invoke", "Content-Length: 1000"))
        status, headers, body = read_reply(sock)  # the body was never sent
        assert status == 401 and code_of(body) == "unauthorized"
        assert headers["connection"] == "close"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_100_mb_upload_by_a_stranger_is_not_read(server: ServerProcess) -> None:
    assert server.proc is not None
    size, block = 100 * 1024 * 1024, b"x" * (1024 * 1024)
    before = rss_kb(server.proc.pid)
    sent = 0
    with raw(server) as sock:
        sock.sendall(head("/v1/agents/echo/invoke", f"Content-Length: {size}"))
        status, _, _ = read_reply(sock)
        assert status == 401  # answered before the client sent any of the 100 MB
        try:
            while sent < size:
                sock.sendall(block)
                sent += len(block)
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert sent < size  # the server hung up rather than take the rest
    assert rss_kb(server.proc.pid) - before < 20 * 1024  # it did not hold the body


def test_half_sent_headers_are_cut_off(server: ServerProcess) -> None:
    with raw(server) as sock:
        sock.sendall(b"POST /v1/tasks HTTP/1.1\r\nHost: test\r\nContent-Le")
        status, headers, body = read_reply(sock)
        assert status == 408 and code_of(body) == "request_timeout"
        assert headers["connection"] == "close"
        assert closed_by_server(sock)
    with raw(server) as sock:  # a connection that says nothing at all
        status, _, _ = read_reply(sock)
        assert status == 408 and closed_by_server(sock)
    with raw(server) as sock:  # the second request of a kept-alive connection
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        assert read_reply(sock)[0] == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        status, _, _ = read_reply(sock)
        assert status == 408 and closed_by_server(sock)


@pytest.mark.parametrize("url", [b"/v1/memories?q=\xc3\xa9", b"/v1/runs?agent=a\x7fb"])
def test_a_request_the_parser_refuses_gets_a_json_400(server: ServerProcess, url: bytes) -> None:
    """Raw non-ASCII or control bytes in the URL (schemathesis sends them): uvicorn's own
    answer is plain text, undocumented; ours is the API's JSON error."""
    with raw(server) as sock:
        sock.sendall(b"GET " + url + b" HTTP/1.1\r\nHost: test\r\n\r\n")
        status, headers, body = read_reply(sock)
        assert status == 400 and code_of(body) == "malformed_request"
        assert headers["content-type"] == "application/json"
        assert closed_by_server(sock)


def test_a_half_sent_body_is_cut_off(server: ServerProcess) -> None:
    with raw(server) as sock:
        sock.sendall(head("/v1/tasks", "Content-Length: 100", key=server.admin_key) + b"{" * 50)
        status, headers, body = read_reply(sock)
        assert status == 408 and code_of(body) == "request_timeout"
        assert headers["connection"] == "close"
        assert closed_by_server(sock)


def admin(server: ServerProcess) -> httpx.Client:
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    return httpx.Client(base_url=server.url, headers=headers, timeout=GUARD_S)


def new_session(server: ServerProcess) -> str:
    with admin(server) as client:
        reply = client.post("/v1/sessions", json={"agent": "echo"})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


async def test_a_websocket_message_is_bounded_like_a_body(server: ServerProcess) -> None:
    url = f"ws://127.0.0.1:{server.port}/v1/sessions/{new_session(server)}/ws"
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    async with connect(url, additional_headers=headers) as conn:
        await conn.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(conn.recv(), GUARD_S))["type"] == "pong"
        frame = {"type": "turn", "input": "é" * (LIMIT // 2)}  # over the limit in UTF-8 only
        await conn.send(json.dumps(frame, ensure_ascii=False))
        reply = json.loads(await asyncio.wait_for(conn.recv(), GUARD_S))
        assert reply["type"] == "error"
        assert reply["error"]["code"] == "payload_too_large"
        assert reply["error"]["details"] == {"max_bytes": LIMIT}
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(conn.recv(), GUARD_S)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big


async def test_a_websocket_message_far_over_the_limit_is_not_read(server: ServerProcess) -> None:
    url = f"ws://127.0.0.1:{server.port}/v1/sessions/{new_session(server)}/ws"
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    async with connect(url, additional_headers=headers) as conn:
        await conn.send(json.dumps({"type": "turn", "input": "x" * (LIMIT + 128 * 1024)}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(conn.recv(), GUARD_S)  # closed by the server, no frame
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_a_key_in_the_query_is_never_logged(server: ServerProcess) -> None:
    key = server.admin_key
    assert key is not None
    url = f"ws://127.0.0.1:{server.port}/v1/sessions/{new_session(server)}/ws?access_token={key}"
    async with connect(url):
        pass
    deadline = time.monotonic() + GUARD_S
    while "access_token=" not in server.log and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)  # the log is flushed every 0.1 s
    log = server.log
    assert "access_token=***" in log
    assert key not in log and key[len("sk_shp_") :] not in log


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
        "http://[::1]/hook",
        "http://127.0.0.1:6379/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://localhost/hook",
        "http://user:pass@example.com/hook",
    ],
)
def test_a_webhook_to_an_internal_address_is_refused_at_submit(
    server: ServerProcess, url: str
) -> None:
    with admin(server) as client:
        reply = client.post("/v1/tasks", json={"agent": "echo", "input": "x", "webhook_url": url})
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["code"] == "egress_denied" and error["details"]["field"] == "webhook_url"
    assert "pass" not in error["message"]
