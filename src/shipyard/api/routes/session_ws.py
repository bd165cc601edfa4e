"""``WS /v1/sessions/{id}/ws``: a session's turns, live, in both directions.

Connecting
    Send the key as ``Authorization: Bearer <key>`` on the upgrade request or, from a browser
    (which cannot set headers on a WebSocket), as ``?access_token=<key>`` — mind that a query
    string may land in proxies' access logs. The key needs the ``invoke`` scope; it is checked
    again before each turn, so a revoked key stops working within the key cache's few seconds.
    The server accepts first and then checks: a refusal is an ``error`` frame followed by a
    close with code 4000 + the HTTP status — 4401 bad or missing key, 4403 missing scope,
    4404 unknown, deleted or expired session (``session_not_found`` / ``session_expired``),
    4422 a bad query parameter, 4503 a store is down.

Frames in (JSON text)
    ``{"type": "turn", "input": "text" | [messages]}`` runs a turn;
    ``{"type": "ping"}`` is answered ``{"type": "pong"}``;
    ``{"type": "resume", "last_event_id": K}`` replays (see below).
    A message over ``SHIPYARD_MAX_BODY_BYTES`` (UTF-8 bytes) is answered with an ``error`` frame
    ``payload_too_large`` and the connection is closed with 1009 (message too big); under
    ``shipyard serve`` one more than 64 KiB over is closed with 1009 before it is even read.
    Anything else (not JSON, binary, an unknown type, a missing or bad field) is answered
    ``{"type": "error", "error": {"code": "invalid_frame", "message", "details"}}``, and the
    connection stays open.

Frames out
    ``{"type": "event", "id": N, "event": {Event}}`` for each event of a turn, deltas included;
    the terminal event (``run.completed`` / ``run.failed``) only once the turn is durable, as
    over SSE. Then ``{"type": "turn.done", "id": N, "run_id", "status"}``, ``status`` being
    ``succeeded``, ``failed`` (a ``run.failed`` was sent) or ``error`` (an ``error`` frame was
    sent instead: the turn was refused — ``session_busy``, with ``run_id`` null — or its record
    could not be confirmed). Every accepted ``turn`` frame gets exactly one ``turn.done``.
    A turn's frames go to every connection open on the session, not only the one that sent it.
    The turn runs on its own: a client that goes away does not stop it, and it is recorded.

Replay
    Frame ids increase within a session; the last ``REPLAY_FRAMES`` (1000) are kept **in this
    process** for a while after the last connection leaves (``shipyard.api.fanout``). Reconnect
    with ``?last_event_id=K`` (or send a ``resume`` frame) to get the frames after K. If some are
    no longer here — dropped from the buffer, or K came from another replica or before a restart
    — an ``error`` frame ``replay_gap`` comes first, then whatever is buffered; a run's recorded
    events stay readable at ``GET /v1/runs/{run_id}/events``. Session affinity at the load
    balancer makes reconnects land where the buffer is; without it they get ``replay_gap``.

Slow clients
    Publishing never waits on a client: a turn appends to the session's buffer and each
    connection's writer sends from it at the pace its client reads. A client that falls more
    than ``REPLAY_FRAMES`` frames behind (the next frame it needs has left the buffer) is closed
    with code 1013 (try again later), reason "client too slow: ...". The turn carries on and is
    recorded. Reconnecting with the last id received gets ``replay_gap`` and what the buffer
    still holds; the missed events are in ``GET /v1/runs/{run_id}/events`` (all but the
    ``llm.delta`` ones, which are never stored — the ``llm.response`` has the whole text).
    A client that sends without reading its replies (over 64 pongs or errors waiting) is
    closed with 1013 as well. Bursts (a model yielding many deltas at once) are not mistaken
    for slowness as long as they fit in the buffer.

Keepalive
    uvicorn pings every 20 s at the protocol level and drops a peer that does not answer; the
    ``ping`` frame is for clients (browsers) that cannot see protocol pings.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shipyard.agents.context import RunRequest
from shipyard.api.audit import SCOPE_USED
from shipyard.api.auth import PRINCIPAL, authenticate, bearer_secret
from shipyard.api.fanout import (
    REPLAY_FRAMES,
    TOO_SLOW,
    Channel,
    Channels,
    Close,
    Frame,
    Resume,
    Subscriber,
)
from shipyard.api.fields import RunInputField
from shipyard.api.keys import Principal
from shipyard.api.state import keys, max_body_bytes, services
from shipyard.errors import (
    AuthError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RunCancelled,
    ShipyardError,
    StoreError,
)
from shipyard.models.base import Message
from shipyard.runtime.sessions import SessionService
from shipyard.stores.storable import text_problem
from shipyard.telemetry.events import TERMINAL, Event

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1/sessions", tags=["sessions"])
channels = Channels()
"""This process's session channels (replay buffers)."""
_turns: set[asyncio.Task[None]] = set()
MESSAGE_TOO_BIG = 1009
_TOO_SLOW = (
    f"client too slow: fell over {REPLAY_FRAMES} frames behind; reconnect with last_event_id"
)


class TurnFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["turn"]
    input: RunInputField = Field(min_length=1)


class PingFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["ping"]


class ResumeFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["resume"]
    last_event_id: int = Field(ge=0)


_INBOUND: TypeAdapter[TurnFrame | PingFrame | ResumeFrame] = TypeAdapter(
    Annotated[TurnFrame | PingFrame | ResumeFrame, Field(discriminator="type")]
)


@dataclass(slots=True)
class _Connection:
    websocket: WebSocket
    secret: str
    principal: Principal
    session_id: str
    channel: Channel
    subscriber: Subscriber
    sessions: SessionService = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = services(self.websocket).sessions

    def reply(self, type_: str, **fields: Any) -> None:
        self.subscriber.offer(Frame.local(type_, **fields))


@router.websocket("/{session_id}/ws")
async def session_ws(websocket: WebSocket, session_id: str) -> None:
    await websocket.accept()
    try:
        principal, secret = await _authenticate(websocket)
        if (problem := text_problem(session_id)) is not None:
            raise InvalidInput(f"session id: text {problem}")
        await services(websocket).sessions.check(principal.tenant_id, session_id)
        resume = _last_event_id(websocket)
    except ShipyardError as exc:
        await _refuse(websocket, exc)
        return
    channel = channels.get(principal.tenant_id, session_id)
    subscriber = channel.subscribe()  # from the newest frame on, unless it resumes
    if resume is not None:
        subscriber.offer(Resume(resume))
    conn = _Connection(websocket, secret, principal, session_id, channel, subscriber)
    tasks = [asyncio.create_task(_read(conn)), asyncio.create_task(_write(conn))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        channel.unsubscribe(subscriber)
        for task in tasks:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.error("websocket failed", session_id=session_id, exc_info=outcome)


async def _authenticate(websocket: WebSocket) -> tuple[Principal, str]:
    header = websocket.headers.get("authorization")
    token = websocket.query_params.get("access_token")
    if header is None and not token:
        raise AuthError(
            "missing key: send Authorization: Bearer <key>, or ?access_token=<key> from a browser"
        )
    secret = bearer_secret(header) if header is not None else str(token)
    websocket.scope[SCOPE_USED] = "invoke"
    principal = await keys(websocket).verify(secret)
    websocket.scope[PRINCIPAL] = principal  # for the connection's audit row (middleware)
    principal.require("invoke")
    return principal, secret


def _last_event_id(websocket: WebSocket) -> int | None:
    raw = websocket.query_params.get("last_event_id")
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise InvalidInput(f"last_event_id must be a non-negative integer, not {raw!r}")
    return int(raw)


async def _refuse(websocket: WebSocket, error: ShipyardError) -> None:
    try:
        await websocket.send_text(Frame.local("error", error=error.to_dict()).text)
        await websocket.close(4000 + error.status, _reason(error.to_dict()["message"]))
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass  # the client has already gone


def _reason(message: str) -> str:
    """A close reason fits in 123 bytes of UTF-8."""
    return message.encode()[:123].decode(errors="ignore")


async def _read(conn: _Connection) -> None:
    limit = max_body_bytes(conn.websocket)
    while True:
        message = await conn.websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if _too_large(text, message.get("bytes"), limit):
            error = PayloadTooLarge(
                f"the message is over {limit} bytes (SHIPYARD_MAX_BODY_BYTES)",
                details={"max_bytes": limit},
            )
            conn.reply("error", error=error.to_dict())
            conn.subscriber.offer(Close(MESSAGE_TOO_BIG, _reason(error.message)))
            while message["type"] != "websocket.disconnect":  # nothing more is read as frames
                message = await conn.websocket.receive()
            return
        if text is None:
            _invalid(conn, "frames must be JSON text, not binary", None)
            continue
        try:
            frame = _INBOUND.validate_json(text)
        except ValidationError as exc:
            _invalid(conn, *_problems(exc))
            continue
        if isinstance(frame, PingFrame):
            conn.reply("pong")
        elif isinstance(frame, ResumeFrame):
            conn.subscriber.offer(Resume(frame.last_event_id))
        else:
            await _start_turn(conn, frame)


def _too_large(text: str | None, data: bytes | None, limit: int) -> bool:
    """Over ``limit`` bytes; a text's UTF-8 is measured only when it could be (≤ 4 bytes a
    character)."""
    if text is not None:
        if len(text) > limit:
            return True
        return len(text) * 4 > limit and len(text.encode(errors="surrogatepass")) > limit
    return data is not None and len(data) > limit


def _invalid(conn: _Connection, message: str, details: Any) -> None:
    body: dict[str, Any] = {"code": "invalid_frame", "message": message}
    if details is not None:
        body["details"] = details
    conn.reply("error", error=body)


def _problems(exc: ValidationError) -> tuple[str, list[dict[str, str]]]:
    problems = [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False)
    ]
    said = "; ".join(
        f"{p['field']}: {p['message']}" if p["field"] else p["message"] for p in problems
    )
    return f"invalid frame: {said}", problems


async def _write(conn: _Connection) -> None:
    """Send this connection's replies and the channel's frames after its cursor, in order."""
    subscriber, channel, websocket = conn.subscriber, conn.channel, conn.websocket
    try:
        while True:
            if subscriber.closing is not None:
                return await _close(websocket, subscriber.closing)
            if subscriber.local:
                item = subscriber.local.popleft()
                if isinstance(item, Close):
                    return await _close(websocket, item)
                if isinstance(item, Resume):
                    await _resume(conn, item.last_event_id)
                else:
                    await websocket.send_text(item.text)
            elif subscriber.cursor < channel.last_id:
                frame = channel.next(subscriber.cursor)
                if frame is None:  # what it needs next has left the buffer
                    subscriber.closing = Close(TOO_SLOW, _TOO_SLOW)
                    continue
                await websocket.send_text(frame.text)
                subscriber.cursor = frame.id or subscriber.cursor
            else:
                subscriber.wake.clear()  # nothing left: sleep until a frame or a reply comes
                await subscriber.wake.wait()
    except (WebSocketDisconnect, OSError):
        return  # the client went away mid-send


async def _close(websocket: WebSocket, close: Close) -> None:
    await websocket.close(close.code, _reason(close.reason))


async def _resume(conn: _Connection, last_event_id: int) -> None:
    """Move the cursor back (or on) to ``last_event_id``, saying so if frames are missing."""
    replay = conn.channel.resume(last_event_id)
    if replay.gap:
        message = (
            f"frames after id {last_event_id} are not all held here (this process keeps the last "
            "frames of a session for a while); what it holds follows. Recorded events of a run: "
            "GET /v1/runs/{run_id}/events"
        )
        error = {
            "code": "replay_gap",
            "message": message,
            "details": {"oldest_id": replay.oldest_id, "last_id": replay.last_id},
        }
        await conn.websocket.send_text(Frame.local("error", error=error).text)
    conn.subscriber.cursor = replay.cursor


async def _start_turn(conn: _Connection, frame: TurnFrame) -> None:
    try:  # the key is checked again for each turn: a revoked key stops here
        await authenticate(keys(conn.websocket), conn.secret, "invoke")
    except ShipyardError as exc:
        conn.reply("error", error=exc.to_dict())
        conn.subscriber.offer(Close(4000 + exc.status, _reason(exc.to_dict()["message"])))
        return
    turn = _Turn(conn)
    conn.channel.turns += 1  # before any await: the channel is not swept while a turn runs
    task = asyncio.create_task(turn.run(frame.input))
    _turns.add(task)
    task.add_done_callback(_turns.discard)


class _Turn:
    """One turn's frames: its events as they come, the terminal one once the turn returned.

    Once the run has begun, frames go to the session's channel (every connection, and the
    replay buffer); a turn refused before it began is answered on its own connection only.
    """

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self._run_id: str | None = None
        self._terminal: Event | None = None

    def sink(self, event: Event) -> None:
        self._run_id = event.run_id
        if event.type in TERMINAL:
            self._terminal = event  # held back until the record is durable
        else:
            self._conn.channel.publish("event", event=event.model_dump(mode="json"))

    async def run(self, input: str | list[Message]) -> None:
        conn = self._conn
        try:
            run = RunRequest.turn(conn.principal.tenant_id, conn.session_id, input)
            await conn.sessions.turn(run, sinks=[self.sink], stream_deltas=True)
        except ShipyardError as exc:
            self._finish(exc)
        except asyncio.CancelledError:
            self._finish(RunCancelled("the turn was cancelled (the server is shutting down)"))
            raise
        except Exception:
            log.exception("session turn failed", session_id=conn.session_id)
            self._finish(ShipyardError("internal error; see the server log"))
        else:
            self._finish(None)
        finally:
            conn.channel.turns -= 1

    def _finish(self, error: ShipyardError | None) -> None:
        conn = self._conn
        began = self._run_id is not None
        send = conn.channel.publish if began else conn.reply
        terminal = None if isinstance(error, StoreError) else self._terminal
        failed = terminal is not None and terminal.type == "run.failed"
        if terminal is not None:
            send("event", event=terminal.model_dump(mode="json"))
        if error is not None and not failed:
            send("error", error=error.to_dict())
        status = "succeeded" if error is None else "failed" if failed else "error"
        send("turn.done", run_id=self._run_id, status=status)
        if not began and isinstance(error, NotFound):  # the session is gone: nothing left to do
            conn.subscriber.offer(Close(4000 + error.status, _reason(error.to_dict()["message"])))
