"""The output filter on the event stream: streamed deltas with a bounded hold-back window.

A run's ``llm.delta`` events pass ``OutputFilter`` (an ``EventProcessor``) before any sink —
the SSE and WebSocket streams included. It keeps the text not yet released; on each delta it
scans it and releases only the part before the last ``hold_back`` characters, and never the
middle of a finding: an entity of at most ``hold_back`` characters split over any number of
deltas is complete inside the window before any of it leaves, and leaves rewritten (or not at
all, after a ``block``). The rest is released when the model's answer ends (``llm.response``)
or at the run's end (``flush``). ``llm.response`` content (stored as the run's steps) is
rewritten the same way. The cost: the first ``hold_back`` characters of each answer wait for
the next ones (docs/guards.md).

Decisions count once: a rule that fires on an answer's stream is one event for the whole answer
(its best score and every type found), sent when the answer ends (a ``block`` at once: the
stream stops there), and noted on the run's guard, so that the final answer's check does not
report the same rule again (``RunGuard.unreported``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from shipyard.guard.pipeline import BLOCKED_OUTPUT, Decision, Hit, RunGuard, rewrite, verdict
from shipyard.telemetry.events import Event


class OutputFilter:
    """One run's output filter (held text is per run)."""

    __slots__ = ("_blocked", "_decided", "_guard", "_held", "_last")

    def __init__(self, guard: RunGuard) -> None:
        self._guard = guard
        self._held = ""
        self._last: Event | None = None  # the delta the held text came in (for ids and span)
        self._blocked = False
        self._decided: dict[tuple[str, str], Decision] = {}  # this answer's, not yet reported

    def process(self, event: Event) -> Sequence[Event]:
        if event.type == "llm.delta":
            return self._delta(event)
        if event.type == "llm.response":
            released = [*self._release_all(), *self._report(event)]
            self._blocked = False  # a block withholds one answer; the next step streams again
            return [*released, self._response(event)]
        return [event]

    def flush(self) -> Sequence[Event]:
        released = self._release_all()
        return [*released, *self._report(self._last)] if self._last is not None else released

    def _note(self, decisions: Sequence[Decision]) -> None:
        """Merge ``decisions`` into the answer's: one per rule (detector and action)."""
        for d in decisions:
            key = (d.detector, d.action)
            seen = self._decided.get(key)
            if seen is not None:
                d = replace(seen, score=max(seen.score, d.score), types=_union(seen, d))
            self._decided[key] = d

    def _report(self, event: Event | None) -> list[Event]:
        """The answer's decisions, one event per rule, noted on the run's guard for the
        answer's text (so the final answer's check leaves them out)."""
        decided, self._decided = self._decided, {}
        if event is None or not decided:
            return []
        content = event.data.get("content")
        if event.type == "llm.response" and isinstance(content, str):
            self._guard.reported(content, decided)
        return [_guard_event(event, d) for d in decided.values() if d.action != "block"]

    def _delta(self, event: Event) -> list[Event]:
        if self._blocked:
            return []
        self._held += str(event.data.get("text", ""))
        self._last = event
        cut = len(self._held) - self._guard.policy.hold_back
        if cut <= 0:
            return []  # nothing can leave yet: no need to scan what is held
        hits = self._guard.hits("output", self._held)
        for _, finding in reversed(hits):  # never cut through a finding
            if finding.start < cut < finding.end:
                cut = finding.start
        released = [(rule, f) for rule, f in hits if f.end <= cut]
        return self._release(cut, released, event)

    def _release_all(self) -> list[Event]:
        if not self._held or self._last is None or self._blocked:
            self._held = ""
            return []
        hits = self._guard.hits("output", self._held)
        return self._release(len(self._held), hits, self._last)

    def _release(self, cut: int, hits: list[Hit], event: Event) -> list[Event]:
        if cut == 0:
            return []
        text, self._held = self._held[:cut], self._held[cut:]
        if not hits:  # the common case: nothing found, the text leaves as it is
            return [event.model_copy(update={"data": {**event.data, "text": text}})]
        judged = verdict("output", text, hits)
        self._note(judged.decisions)
        if judged.blocked:  # reported at once: the stream stops here
            self._blocked, self._held = True, ""
            out = [_guard_event(event, d) for d in judged.decisions if d.action == "block"]
            return [*out, event.model_copy(update={"data": {"text": BLOCKED_OUTPUT}})]
        return [event.model_copy(update={"data": {**event.data, "text": judged.text}})]

    def _response(self, event: Event) -> Event:
        content = event.data.get("content")
        if not isinstance(content, str) or not content:
            return event
        hits = self._guard.hits("output", content)
        if not hits:
            return event
        judged = verdict("output", content, hits)
        text = BLOCKED_OUTPUT if judged.blocked else rewrite(content, hits)
        return event.model_copy(update={"data": {**event.data, "content": text}})


def _union(a: Decision, b: Decision) -> tuple[str, ...]:
    return tuple(sorted({*a.types, *b.types}))


def _guard_event(event: Event, decision: Decision) -> Event:
    """A decision about streamed text, as an event of the delta's step."""
    data = {**decision.data(), "stream": True}
    return event.model_copy(update={"type": decision.event_type, "data": data})


__all__ = ["OutputFilter"]
