"""The session channels behind the WebSocket: numbering, replay, cut-off and eviction."""

from __future__ import annotations

import json

from shipyard.api.fanout import LOCAL_FRAMES, TOO_SLOW, Channel, Channels, Close, Frame, Resume


def channel(capacity: int = 5) -> Channel:
    return Channel(first_id=101, capacity=capacity)


def ids(frames: list[Frame | None]) -> list[int | None]:
    return [f.id if f is not None else None for f in frames]


async def test_frames_are_numbered_and_fanned_out_without_copies() -> None:
    ch = channel()
    a, b = ch.subscribe(), ch.subscribe()
    frame = ch.publish("event", event={"x": 1})
    assert frame.id == 101 and json.loads(frame.text) == {
        "type": "event",
        "id": 101,
        "event": {"x": 1},
    }
    assert a.wake.is_set() and b.wake.is_set()
    assert ch.next(a.cursor) is frame and ch.next(frame.id or 0) is None


async def test_a_subscriber_starts_at_the_newest_frame() -> None:
    ch = channel()
    ch.publish("event")
    late = ch.subscribe()
    assert ch.next(late.cursor) is None
    assert ch.publish("event").id == 102 and ids([ch.next(late.cursor)]) == [102]


async def test_a_cursor_left_behind_by_the_buffer_gets_nothing() -> None:
    ch = channel(capacity=3)
    slow = ch.subscribe()
    for _ in range(4):
        ch.publish("event")
    assert ch.next(slow.cursor) is None  # 101 is gone: the writer closes with 1013
    assert ids([ch.next(101)]) == [102]


async def test_resume_from_an_id_held_continues_right_after_it() -> None:
    ch = channel()
    for _ in range(3):
        ch.publish("event")
    replay = ch.resume(101)
    assert (replay.cursor, replay.gap, replay.oldest_id, replay.last_id) == (101, False, 101, 103)
    assert ch.resume(103).cursor == 103 and not ch.resume(103).gap
    assert ch.resume(0) == ch.resume(100)  # from the start, with nothing dropped: no gap
    assert not ch.resume(0).gap and ch.resume(0).cursor == 100


async def test_resume_past_the_buffer_or_from_elsewhere_is_a_gap() -> None:
    ch = channel(capacity=2)
    for _ in range(4):  # 101, 102 dropped
        ch.publish("event")
    for last_seen in (0, 1, 101, 999_999):  # dropped, another channel's, or not issued yet
        replay = ch.resume(last_seen)
        assert replay.gap and replay.cursor == 102, last_seen  # then all that is held
    assert not ch.resume(102).gap and ch.resume(102).cursor == 102


async def test_replies_are_bounded() -> None:
    sub = channel().subscribe()
    for _ in range(LOCAL_FRAMES):
        sub.offer(Frame.local("pong"))
    assert sub.closing is None
    sub.offer(Frame.local("pong"))  # one too many: close at once, skipping what is queued
    assert sub.closing is not None and sub.closing.code == TOO_SLOW
    sub.offer(Close(4404, "gone"))
    assert len(sub.local) == LOCAL_FRAMES


async def test_a_close_comes_after_the_replies_before_it_and_ends_the_queue() -> None:
    sub = channel().subscribe()
    sub.offer(Frame.local("error"))
    sub.offer(Close(4404, "gone"))
    sub.offer(Frame.local("pong"))
    sub.offer(Resume(1))
    assert [type(i).__name__ for i in sub.local] == ["Frame", "Close"] and sub.closing is None


async def test_idle_channels_are_swept_busy_ones_kept() -> None:
    channels = Channels(idle_keep_s=0, idle_max=10)
    watched = channels.get("t", "watched")
    sub = watched.subscribe()
    running = channels.get("t", "running")
    running.turns += 1
    channels.get("t", "idle")
    assert channels.get("t", "other") is not None
    assert len(channels) == 3  # "idle" swept; "watched" and "running" kept
    assert channels.get("t", "watched") is watched and channels.get("t", "running") is running
    watched.unsubscribe(sub)
    assert channels.get("u", "watched") is not watched  # per tenant


async def test_beyond_the_idle_limit_the_least_recent_go() -> None:
    channels = Channels(idle_max=2)
    a, b, c = (channels.get("t", name) for name in "abc")
    channels.get("t", "d")  # sweeps first: a, b and c are idle, one too many
    assert len(channels) == 3
    assert channels.get("t", "c") is c  # sweeps again: b goes
    assert channels.get("t", "a") is not a and channels.get("t", "b") is not b
