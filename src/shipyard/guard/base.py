"""What every content guard shares: a detector finds spans of a text, a policy says what to do.

A ``Detector`` is pure and synchronous (it runs on every message, tool result and streamed
delta, so it must be cheap): ``scan(text)`` returns the spans it found, each with a type and a
score in [0, 1]. A detector that judges a whole text (prompt injection) returns one finding
covering it, or none. Detectors know nothing of runs, events or policies; the guard pipeline
(the run loop's seam) applies the policy's action to what they find.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Action = Literal["block", "flag", "spotlight", "redact", "mask", "hash", "pseudonymize"]
"""What a policy does with a finding (docs/guards.md)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """A span ``text[start:end]`` of ``type`` (``EMAIL_ADDRESS``, ``CREDIT_CARD``,
    ``PRIVATE_KEY``, ``injection``...), with the detector's confidence."""

    start: int
    end: int
    type: str
    score: float = 1.0


class Detector(Protocol):
    """Finds what one guard looks for. ``name``: ``injection``, ``pii`` or ``secrets``."""

    name: str

    def scan(self, text: str) -> list[Finding]:
        """Every finding in ``text``, in order of ``start``; never raises on odd input."""
        ...
