"""A session's outgoing WebSocket frames: fanned out to its connections, the latest kept for replay.

Each session watched over a WebSocket has one ``Channel`` **in this process**. A turn publishes
its frames to the channel, which numbers them, keeps the last ``REPLAY_FRAMES`` in a ring buffer
and wakes the connections. Publishing never waits and copies nothing per connection: each
connection is a cursor into the shared buffer, sent from by its own writer at its own pace. A
connection so slow that the frame it needs next has left the buffer is cut off (1013) rather
than ever slowing the turn; a burst (a model yielding many deltas at once) is not mistaken for
a slow client as long as it fits in the buffer.

Frame ids increase within a channel and start from the clock (microseconds since the epoch), so
an id from an earlier channel of the same session (evicted, or in another process) is older than
anything this one holds and is reported as a gap rather than silently matched to other frames.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

REPLAY_FRAMES = 1000
"""Frames kept per session for replay; also how far behind a connection may fall."""
LOCAL_FRAMES = 64
"""Replies to one connection (pongs, errors) waiting to be sent before it counts as too slow."""
IDLE_KEEP_S = 300.0
"""How long a channel nobody watches (and no turn feeds) keeps its buffer for a reconnect."""
IDLE_CHANNELS = 200
"""At most this many idle channels are kept; beyond it the least recently used go first."""

TOO_SLOW = 1013  # "try again later"


@dataclass(frozen=True, slots=True)
class Frame:
    """A JSON text frame; ``id`` is None for frames that answer one connection (pong, errors)."""

    id: int | None
    text: str

    @classmethod
    def local(cls, type_: str, **fields: Any) -> Frame:
        return cls(None, json.dumps({"type": type_, **fields}))


@dataclass(frozen=True, slots=True)
class Resume:
    """Replay the buffered frames after ``last_event_id`` on this connection."""

    last_event_id: int


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


class Subscriber:
    """One connection: ``cursor`` is the id of the last channel frame it was sent; ``local``
    holds what only it gets, in order (replies, replays, a close). ``wake`` is set whenever
    there is something new for it; ``closing`` is a close that skips everything still queued."""

    __slots__ = ("closing", "cursor", "ended", "local", "wake")

    def __init__(self, cursor: int) -> None:
        self.cursor = cursor
        self.local: deque[Frame | Resume | Close] = deque()
        self.wake = asyncio.Event()
        self.closing: Close | None = None
        self.ended = False

    def offer(self, item: Frame | Resume | Close) -> None:
        """Queue a reply, a replay or a close (after the replies before it); never waits."""
        if self.ended:
            return
        if len(self.local) >= LOCAL_FRAMES:
            self.closing = Close(TOO_SLOW, "client too slow: it does not read its replies")
            self.ended = True
        else:
            self.local.append(item)
            self.ended = isinstance(item, Close)
        self.wake.set()


@dataclass(frozen=True, slots=True)
class Replay:
    cursor: int
    """Where to send from: the requested id, or just before the oldest frame held on a gap."""
    gap: bool
    """Some frames after the requested id are not here: dropped, or never issued by this
    channel (an id from another process, or from before this channel existed)."""
    oldest_id: int | None
    last_id: int


class Channel:
    def __init__(self, *, first_id: int, capacity: int) -> None:
        self._frames: deque[Frame] = deque(maxlen=capacity)
        self._last_id = first_id - 1
        self._dropped = False
        self.subscribers: set[Subscriber] = set()
        self.turns = 0
        self.touched = time.monotonic()

    @property
    def last_id(self) -> int:
        return self._last_id

    @property
    def idle(self) -> bool:
        return not self.subscribers and self.turns == 0

    def subscribe(self) -> Subscriber:
        """A connection that gets the frames published from now on."""
        subscriber = Subscriber(self._last_id)
        self.subscribers.add(subscriber)
        self.touched = time.monotonic()
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        self.touched = time.monotonic()

    def publish(self, type_: str, **fields: Any) -> Frame:
        """Number and buffer a frame, and wake the connections; never waits."""
        self._last_id += 1
        frame = Frame(self._last_id, json.dumps({"type": type_, "id": self._last_id, **fields}))
        if len(self._frames) == self._frames.maxlen:
            self._dropped = True
        self._frames.append(frame)
        self.touched = time.monotonic()
        for subscriber in self.subscribers:
            subscriber.wake.set()
        return frame

    def next(self, cursor: int) -> Frame | None:
        """The frame after ``cursor``; None if there is none yet, or if it was dropped already
        (the connection fell more than the buffer behind)."""
        if cursor >= self._last_id or not self._frames:
            return None
        index = cursor + 1 - (self._frames[0].id or 0)
        return self._frames[index] if index >= 0 else None

    def resume(self, last_event_id: int) -> Replay:
        """Where a connection that saw up to ``last_event_id`` (0: nothing) carries on."""
        oldest = self._frames[0].id if self._frames else None
        floor = (oldest if oldest is not None else self._last_id + 1) - 1
        if last_event_id > self._last_id:
            gap = True  # not an id this channel issued
        elif last_event_id == 0:
            gap = self._dropped
        else:
            gap = last_event_id < floor
        cursor = floor if gap or last_event_id < floor else last_event_id
        return Replay(cursor=cursor, gap=gap, oldest_id=oldest, last_id=self._last_id)


class Channels:
    """The channels of this process, by tenant and session. Idle ones are swept on each ``get``."""

    def __init__(
        self,
        *,
        capacity: int = REPLAY_FRAMES,
        idle_keep_s: float = IDLE_KEEP_S,
        idle_max: int = IDLE_CHANNELS,
    ) -> None:
        self._capacity = capacity
        self._idle_keep_s = idle_keep_s
        self._idle_max = idle_max
        self._channels: dict[tuple[str, str], Channel] = {}

    def __len__(self) -> int:
        return len(self._channels)

    def get(self, tenant_id: str, session_id: str) -> Channel:
        self._sweep()
        key = (tenant_id, session_id)
        channel = self._channels.get(key)
        if channel is None:
            first_id = time.time_ns() // 1000
            channel = self._channels[key] = Channel(first_id=first_id, capacity=self._capacity)
        return channel

    def _sweep(self) -> None:
        cutoff = time.monotonic() - self._idle_keep_s
        idle = sorted(
            ((c.touched, key) for key, c in self._channels.items() if c.idle),
            key=lambda pair: pair[0],
        )
        excess = len(idle) - self._idle_max
        for n, (touched, key) in enumerate(idle):
            if touched < cutoff or n < excess:
                del self._channels[key]
