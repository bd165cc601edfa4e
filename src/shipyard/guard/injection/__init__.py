"""Prompt-injection and jailbreak detector (docs/guards.md, "Prompt injection detector").

``InjectionDetector().score(text)`` is a probability in [0, 1]; ``scan(text)`` returns one
``Finding`` of type ``injection`` covering the whole text when the score reaches the threshold.
"""

from __future__ import annotations

from shipyard.guard.base import Finding
from shipyard.guard.injection.model import LinearModel, default_model, load_model
from shipyard.guard.injection.normalize import decoded_segments, normalize

__all__ = [
    "InjectionDetector",
    "LinearModel",
    "decoded_segments",
    "load_model",
    "normalize",
]


class InjectionDetector:
    """Scores a whole text; flags it at ``threshold`` (default: the shipped model's, chosen
    for about 1% false positives on held-out benign text)."""

    name = "injection"

    def __init__(self, threshold: float | None = None, model: LinearModel | None = None) -> None:
        self.model = model or default_model()
        self.threshold = self.model.threshold if threshold is None else threshold

    def score(self, text: str) -> float:
        """The probability that ``text`` is an injection or jailbreak attempt."""
        return self.model.score(text)

    def scan(self, text: str) -> list[Finding]:
        """One finding over all of ``text`` when its score reaches the threshold, else none."""
        score = self.score(text)
        if score >= self.threshold:
            return [Finding(0, len(text), "injection", score)]
        return []
