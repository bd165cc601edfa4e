"""The output filter's hold-back window, on the event stream itself: whatever way the text is
split into deltas, no finding ever leaves unrewritten, and text leaves once it is out of the
window (the stream is delayed by at most ``hold_back`` characters)."""

from __future__ import annotations

import random

from shipyard import GuardPolicy, GuardRule
from shipyard.guard.pipeline import RunGuard
from shipyard.guard.stream import OutputFilter
from shipyard.telemetry.events import Event
from tests.guard.detectors import CARD

TEXT = f"Sure. The card we have on file is {CARD}, expiring soon; anything else I can do?"
REDACTED = TEXT.replace(CARD, "[CREDIT_CARD]")


def guard(hold_back: int = 32) -> RunGuard:
    rule = GuardRule(detector="test_cards", surfaces=("output",), action="redact")
    return RunGuard(GuardPolicy(rules=(rule,), hold_back=hold_back))


def delta(text: str) -> Event:
    return Event(
        type="llm.delta",
        run_id="run_1",
        seq=0,
        ts=0.0,
        tenant_id="t",
        agent="a",
        trace_id="0" * 32,
        span_id="1" * 16,
        data={"text": text},
    )


def split(text: str, pieces: int, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), pieces - 1))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def streamed(parts: list[str], hold_back: int = 32) -> tuple[list[str], list[Event]]:
    out = OutputFilter(guard(hold_back))
    events = [e for part in parts for e in out.process(delta(part))]
    events += list(out.flush())
    return [e.data["text"] for e in events if e.type == "llm.delta"], events


def test_a_card_split_into_five_deltas_anywhere_never_leaves() -> None:
    rng = random.Random(7)
    start = TEXT.index(CARD)
    for _ in range(300):  # five pieces, the card cut in each of them
        inner = sorted(rng.sample(range(start + 1, start + len(CARD)), 4))
        parts = [TEXT[a:b] for a, b in zip([0, *inner], [*inner, len(TEXT)], strict=True)]
        texts, _ = streamed(parts)
        assert "".join(texts) == REDACTED
        assert all(CARD[:4] not in t for t in texts)
    for pieces in (2, 5, 17, len(TEXT)):
        texts, _ = streamed(split(TEXT, pieces, rng))
        assert "".join(texts) == REDACTED


def test_text_leaves_once_it_is_out_of_the_window() -> None:
    words = ("lorem ipsum dolor sit amet " * 10).split(" ")
    out = OutputFilter(guard(hold_back=16))
    held = 0
    for word in words:
        released = "".join(e.data["text"] for e in out.process(delta(word + " ")))
        held += len(word) + 1 - len(released)
        assert held <= 16
    assert held > 0  # the tail waits for the end


def test_guard_events_of_the_stream_carry_no_text() -> None:
    _, events = streamed(split(TEXT, 5, random.Random(1)))
    [flag] = [e for e in events if e.type == "guard.flag"]
    assert flag.data == {
        "guard": "test_cards",
        "action": "redact",
        "surface": "output",
        "score": 1.0,
        "types": ["CREDIT_CARD"],
        "stream": True,
    }


def test_a_block_withholds_the_rest_of_its_step_only() -> None:
    rule = GuardRule(detector="test_cards", surfaces=("output",), action="block")
    out = OutputFilter(RunGuard(GuardPolicy(rules=(rule,), hold_back=8)))
    response = delta("").model_copy(update={"type": "llm.response", "data": {"content": "x"}})
    first = [e for part in ("card ", CARD, " and more text") for e in out.process(delta(part))]
    first += out.process(response)
    second = [e for part in ("all ", "fine ", "now") for e in out.process(delta(part))]
    second += out.flush()
    text = ["".join(e.data["text"] for e in events if e.type == "llm.delta")
            for events in (first, second)]  # fmt: skip
    assert text == ["card [blocked by guard]", "all fine now"]
