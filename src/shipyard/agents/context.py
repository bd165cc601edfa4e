"""What a running agent can see and use: its ids, the event emitter, and defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from shipyard.models.base import Message, Usage
from shipyard.telemetry.events import Emitter, EventType, Step

RunInput = str | list[Message]


@dataclass(frozen=True, slots=True)
class ContextBudget:
    """How much history a session may send the model, and what to do beyond it.

    ``max_tokens`` is estimated (about four characters a token). ``policy``: ``truncate``
    drops the oldest turns, ``summarize`` has the model write a summary of them (the full
    text stays in the records, turn by turn), ``error`` refuses the turn (422
    ``context_overflow``). ``keep_last`` messages are always kept verbatim.
    """

    max_tokens: int
    policy: Literal["truncate", "summarize", "error"] = "truncate"
    keep_last: int = 4


@dataclass(slots=True)
class RunContext:
    """Handed to every agent run; ``usage`` accumulates as model calls are made."""

    run_id: str
    tenant_id: str
    agent: str
    emitter: Emitter
    default_model: str
    tool_timeout_s: float = 30.0
    metadata: dict[str, Any] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)

    def emit(self, type_: EventType | str, /, span_id: str | None = None, **data: Any) -> None:
        """Add an event to the run's stream: one of Shipyard's kinds, or one of your own with a
        namespaced type (``ctx.emit("app.progress", done=3)``) and JSON data. A type or data
        the event schema does not allow raises ``InvalidEvent`` (a ``ValueError``) here, and
        the run's stream is left as it was."""
        self.emitter.emit(type_, span_id, **data)

    def step(self, span_id: str) -> Step:
        """This run at one of its steps: the parent of child runs started there."""
        return Step(self.run_id, self.tenant_id, self.emitter.trace_id, span_id)


@dataclass(frozen=True, slots=True)
class RunResult:
    """An agent's answer, with the messages the run added (for sessions) and the tokens it used."""

    output: str
    usage: Usage
    messages: tuple[Message, ...] = ()
