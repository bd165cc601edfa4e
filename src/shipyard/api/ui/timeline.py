"""A run's stored events as the steps its page shows, and a trace's spans as waterfall bars.

Steps pair what belongs together: a model call is its ``llm.request`` and ``llm.response`` (same
span), a tool call its ``tool.call`` and ``tool.result`` (same call id). Routing decisions
(``llm.route``), guard decisions, egress and custom events are steps of their own; the run's
start and end frame the list.

Each model call shows the messages it was sent as the run's events record them: the run's
input, then each earlier answer and tool result, in order (``Conversation``). The events are
stored after the guards' processors, so a redacted value is its marker (``[EMAIL_ADDRESS]``),
never the text; the agent's instructions and a session's earlier turns are not in a run's
events, so the call's own count of messages (``llm.request``) is shown beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shipyard.telemetry.events import Event
from shipyard.telemetry.spans import SpanRow


@dataclass(slots=True)
class Step:
    kind: str
    """``run``, ``model``, ``tool``, ``guard``, ``egress``, ``event`` (custom) or ``end``."""
    title: str
    seq: int
    ts: float
    data: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    """The answer half of a pair (``llm.response``, ``tool.result``); None while it runs."""
    messages: list[dict[str, Any]] = field(default_factory=list)
    """A model call's messages, as far as the run's events record them."""


class Conversation:
    """The messages a run's model calls were sent, rebuilt from its events in order."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def see(self, event: Event) -> None:
        data = event.data
        if event.type == "run.started":
            given = data.get("input")
            if isinstance(given, list):
                self.messages.extend(m for m in given if isinstance(m, dict))
            elif given is not None:
                self.messages.append({"role": "user", "content": given})
        elif event.type == "llm.response":
            said = {"role": "assistant", "content": data.get("content")}
            self.messages.append(
                said | ({"tool_calls": data["tool_calls"]} if data.get("tool_calls") else {})
            )
        elif event.type == "tool.result":
            answer = data.get("output") if data.get("ok") else data.get("error")
            self.messages.append({"role": "tool", "name": data.get("name"), "content": answer})


def steps_of(events: list[Event]) -> list[Step]:
    steps: list[Step] = []
    open_models: dict[str, Step] = {}
    open_tools: dict[str, Step] = {}
    conversation = Conversation()
    for event in events:
        step = _step(event, open_models, open_tools)
        if step is not None:
            steps.append(step)
        if event.type == "llm.request" and step is not None:
            step.messages = list(conversation.messages)
        conversation.see(event)
    return steps


def _step(event: Event, models: dict[str, Step], tools: dict[str, Step]) -> Step | None:
    kind = event.type.partition(".")[0]
    data = dict(event.data)
    if event.type == "llm.request":
        step = Step("model", f"model call · {data.get('model', '?')}", event.seq, event.ts, data)
        models[event.span_id] = step
        return step
    if event.type == "llm.route":
        title = f"route · {data.get('router', '?')} → {data.get('chosen') or 'no model'}"
        return Step("route", title, event.seq, event.ts, data)
    if event.type == "llm.response":
        return _answer(models.pop(event.span_id, None), event, "model")
    if event.type == "tool.call":
        step = Step("tool", f"tool · {data.get('name', '?')}", event.seq, event.ts, data)
        tools[str(data.get("id"))] = step
        return step
    if event.type == "tool.result":
        return _answer(tools.pop(str(data.get("id")), None), event, "tool")
    if event.type == "run.started":
        return Step("run", "run started", event.seq, event.ts, data)
    if event.type in ("run.completed", "run.failed"):
        return Step("end", event.type.replace(".", " "), event.seq, event.ts, data)
    if kind in ("guard", "egress"):
        return Step(kind, event.type, event.seq, event.ts, data)
    return Step("event", event.type, event.seq, event.ts, data)


def _answer(opened: Step | None, event: Event, kind: str) -> Step | None:
    """Attach an answer to its call; an answer without one (a gap) stands alone."""
    if opened is not None:
        opened.result = dict(event.data)
        return None
    name = event.data.get("model") or event.data.get("name") or "?"
    return Step(kind, f"{event.type} · {name}", event.seq, event.ts, {}, dict(event.data))


@dataclass(frozen=True, slots=True)
class Bar:
    """One span of the waterfall: its place and width in percent of the trace's duration."""

    span: SpanRow
    depth: int
    left_pct: float
    width_pct: float
    duration_ms: float


def waterfall(rows: list[SpanRow]) -> list[Bar]:
    """Spans in start order, indented under their parents, scaled to the whole trace."""
    start = min(r["start_ns"] for r in rows)
    end = max(r["end_ns"] for r in rows)
    total = max(end - start, 1)
    ids = {r["span_id"] for r in rows}
    depth: dict[str, int] = {}
    bars: list[Bar] = []
    for row in sorted(rows, key=lambda r: (r["start_ns"], r["end_ns"])):
        parent = row["parent_span_id"]
        level = depth.get(parent, 0) + 1 if parent in ids and parent is not None else 0
        depth[row["span_id"]] = level
        left = (row["start_ns"] - start) / total * 100
        width = max((row["end_ns"] - row["start_ns"]) / total * 100, 0.5)
        duration = (row["end_ns"] - row["start_ns"]) / 1e6
        bars.append(Bar(row, level, round(left, 2), round(min(width, 100 - left), 2), duration))
    return bars
