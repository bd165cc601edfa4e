"""The learned router's scorer: a logistic regression over ``features``, weights shipped in the
package (``model.json.gz``, written by ``scripts/train_router.py``).

Loading needs no network, no pickle, no numpy: a gzip'd JSON of weights, and scoring is one
dictionary lookup per feature (``shipyard.guard.injection.model`` is the same pattern). The
score is the probability that the strong model is needed: that the cheaper one gets wrong what
the strongest gets right.
"""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass, field
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

from shipyard.models.router.features import ngram_weight, parts

MODEL_PATH = Path(__file__).with_name("model.json.gz")
MAX_CHARS = 4000
"""Only the last this many characters of a prompt are scored (the question sits at the end of
a long conversation); it caps the cost of a decision."""


@dataclass(frozen=True, slots=True)
class RouterWeights:
    """Weights per feature, a bias, and the score cut-offs measured at training time
    (``cutoffs``: the score above which a given share of held-out prompts falls, by share;
    ``quality``: the share of strong calls that recovers a given share of the quality gap)."""

    weights: dict[str, float]
    bias: float
    meta: dict[str, Any] = field(default_factory=dict)

    def score(self, text: str) -> float:
        """How much ``text`` needs the strong model, in [0, 1]."""
        grams, shapes = parts(text[-MAX_CHARS:])
        weights = self.weights
        known = weights.keys() & grams
        z = self.bias + sum(weights[n] for n in known) * ngram_weight(grams)
        z += sum(weights.get(n, 0.0) for n in shapes)
        return 1.0 / (1.0 + math.exp(-z)) if z > -60 else 0.0

    def threshold_for_share(self, strong_share: float) -> float:
        """The score above which about ``strong_share`` of prompts fall (held-out scores)."""
        return _interpolate(self.meta.get("share_cutoffs", {}), strong_share)

    def threshold_for_quality(self, gap_recovered: float) -> float:
        """The score cut-off that recovered ``gap_recovered`` of the strong model's quality
        gap in cross-validation (PGR; 0.8 = 80%)."""
        share = _interpolate(self.meta.get("quality_shares", {}), gap_recovered)
        return self.threshold_for_share(share)

    def to_json(self) -> dict[str, Any]:
        return {"bias": self.bias, "meta": self.meta, "weights": self.weights}

    def save(self, path: Path = MODEL_PATH) -> None:
        data = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        path.write_bytes(gzip.compress(data.encode(), mtime=0))


def _interpolate(table: dict[str, float], x: float) -> float:
    """Linear interpolation in a ``{"0.1": y, ...}`` table (clamped at its ends)."""
    points = sorted((float(k), float(v)) for k, v in table.items())
    if not points:
        return 0.5
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in pairwise(points):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else y1
    return points[-1][1]


def load_weights(path: Path = MODEL_PATH) -> RouterWeights:
    """The weights stored at ``path`` (by default the ones shipped in the package)."""
    data = json.loads(gzip.decompress(path.read_bytes()))
    return RouterWeights(
        weights={str(k): float(v) for k, v in data["weights"].items()},
        bias=float(data["bias"]),
        meta=dict(data.get("meta", {})),
    )


@cache
def default_weights() -> RouterWeights:
    """The shipped weights, loaded once per process."""
    return load_weights()
