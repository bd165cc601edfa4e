"""The scorer: a logistic regression over ``features`` (weights shipped in the package), with
the hand-written rules' own score as a floor.

The weights are a gzip'd JSON file beside this module (``model.json.gz``, written by
``scripts/train_injection.py``): loading it needs no network, no pickle and no numpy or
scikit-learn, so the server imports nothing heavy. Scoring is a dictionary lookup per feature.
"""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from shipyard.guard.injection.features import ngram_weight, parts, rule_score
from shipyard.guard.injection.normalize import decoded_segments, normalize

MODEL_PATH = Path(__file__).with_name("model.json.gz")
WINDOW = 2500
"""Texts longer than this are also scored in windows of it (stride 2/3 of it), so an
injection buried in a long document is not diluted by the rest of it."""


@dataclass(frozen=True, slots=True)
class LinearModel:
    """Weights per feature name, a bias, and the threshold chosen at training time."""

    weights: dict[str, float]
    bias: float
    threshold: float = 0.5
    meta: dict[str, Any] = field(default_factory=dict)

    def _prob(self, text: str) -> float:
        """The higher of the classifier's probability and the rules' score for one
        (normalised) text."""
        grams, rules = parts(text)
        weights = self.weights
        known = weights.keys() & grams  # a set intersection, in C: the hot path
        ngrams = sum(weights[name] for name in known) * ngram_weight(grams)
        z = self.bias + ngrams + sum(weights.get(name, 0.0) for name in rules)
        learned = 1.0 / (1.0 + math.exp(-z)) if z > -60 else 0.0
        return max(learned, rule_score(rules))

    def score(self, text: str) -> float:
        """The probability that ``text`` (raw) is an injection or jailbreak, in [0, 1]: the
        highest over the normalised text, its windows, and what is decoded from it."""
        clean = normalize(text)
        best = 0.0
        for part in [clean, *decoded_segments(clean)]:
            best = max(best, self._prob(part))
            if len(part) > WINDOW:
                stride = WINDOW * 2 // 3
                for start in range(0, len(part) - WINDOW + stride, stride):
                    best = max(best, self._prob(part[start : start + WINDOW]))
        return best

    def to_json(self) -> dict[str, Any]:
        return {
            "bias": self.bias,
            "threshold": self.threshold,
            "meta": self.meta,
            "weights": self.weights,
        }

    def save(self, path: Path = MODEL_PATH) -> None:
        data = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        path.write_bytes(gzip.compress(data.encode(), mtime=0))


def load_model(path: Path = MODEL_PATH) -> LinearModel:
    """The model stored at ``path`` (by default the one shipped in the package)."""
    data = json.loads(gzip.decompress(path.read_bytes()))
    return LinearModel(
        weights={str(k): float(v) for k, v in data["weights"].items()},
        bias=float(data["bias"]),
        threshold=float(data["threshold"]),
        meta=dict(data.get("meta", {})),
    )


@cache
def default_model() -> LinearModel:
    """The shipped model, loaded once per process."""
    return load_model()
