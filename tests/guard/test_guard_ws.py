"""A card number split over five deltas never reaches a session's WebSocket (a real server)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.guard.detectors import CARD
from tests.servers import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(home=tmp_path_factory.mktemp("home"), app="tests.guard.guard_app:app")
    proc.start()
    yield proc
    proc.stop()


async def test_a_card_split_over_five_deltas_never_reaches_the_websocket(
    server: ServerProcess,
) -> None:
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as c:
        reply = await c.post("/v1/sessions", json={"agent": "echo"})
        assert reply.status_code == 201, reply.text
        session = reply.json()["id"]
    url = f"ws://127.0.0.1:{server.port}/v1/sessions/{session}/ws"
    frames: list[dict[str, Any]] = []
    raw: list[str] = []
    async with connect(url, additional_headers=headers) as conn:
        await conn.send(json.dumps({"type": "turn", "input": f"my card {CARD} ok"}))
        while not frames or frames[-1]["type"] != "turn.done":
            raw.append(str(await asyncio.wait_for(conn.recv(), 30)))
            frames.append(json.loads(raw[-1]))
    events = [f["event"] for f in frames if f["type"] == "event"]
    deltas = [e["data"]["text"] for e in events if e["type"] == "llm.delta"]
    assert "".join(deltas) == "echo: my card [CREDIT_CARD] ok"
    assert events[-1]["data"]["output"] == "echo: my card [CREDIT_CARD] ok"
    outbound = [r for r, f in zip(raw, frames, strict=True) if f.get("event", {}).get("type")
                not in ("run.started", "llm.request")]  # fmt: skip
    assert not any(CARD in r for r in outbound)
    assert not any(part in "".join(deltas) for part in ("4111", "111 111"))
