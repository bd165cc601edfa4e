"""What the learned router sees of a prompt, shared by training and scoring.

Cheap on purpose (a decision must cost well under a millisecond): lower-cased words (``w:``)
and word pairs (``b:``) weighted 1/sqrt(n) so the n-gram part has unit length, plus a few
shape features (``s:``) that carry across subjects — how long the prompt is, how much of it is
digits and symbols (arithmetic, formulas, code), whether it compares statements or asks for a
computation. No character n-grams: they doubled the cost for no held-out gain.
"""

from __future__ import annotations

import math
import re
from itertools import pairwise

_TOKEN = re.compile(r"\w+", re.UNICODE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_MATH = re.compile(r"[=+*/^<>≤≥√∑∫π%$\\]")
_CUES: dict[str, re.Pattern[str]] = {
    "statements": re.compile(r"\bstatement 1\b"),
    "compute": re.compile(
        r"\b(?:calculate|compute|how many|how much|what is the value|find the|solve|evaluate|"
        r"probability|expected|rate|speed|percent|average|total|sum of|product of)\b"
    ),
    "code": re.compile(r"(?:\bdef |\breturn\b|[{};]\s*$|\bprint\(|\bint\b|\bfor \w+ in\b)", re.M),
    "negation": re.compile(r"\b(?:not|except|false|incorrect|least)\b"),
}


def _bucket(prefix: str, value: float) -> str:
    return f"s:{prefix}{min(int(value), 12)}"


def shape(text: str, lowered: str, tokens: list[str]) -> list[str]:
    """The shape features of a prompt: log2 buckets of its size, its numbers and symbols."""
    numbers = len(_NUMBER.findall(text))
    symbols = len(_MATH.findall(text))
    out = [
        _bucket("len", math.log2(1 + len(text))),
        _bucket("words", math.log2(1 + len(tokens))),
        _bucket("num", math.log2(1 + numbers)),
        _bucket("sym", math.log2(1 + symbols)),
        _bucket("numshare", 20 * numbers / (1 + len(tokens))),
    ]
    out += [f"s:{name}" for name, pattern in _CUES.items() if pattern.search(lowered)]
    return out


def parts(text: str) -> tuple[set[str], list[str]]:
    """The n-gram features and the shape features of ``text``."""
    lowered = text.lower()
    tokens = _TOKEN.findall(lowered)
    grams = {"w:" + t for t in tokens}
    grams.update(f"b:{a} {b}" for a, b in pairwise(tokens))
    return grams, shape(text, lowered, tokens)


def ngram_weight(grams: set[str]) -> float:
    """The value of each n-gram feature: 1/sqrt(n), so the n-gram part has unit length."""
    return 1.0 / math.sqrt(len(grams)) if grams else 0.0


def features(text: str) -> dict[str, float]:
    """The weighted features of ``text``, as training sees them."""
    grams, shapes = parts(text)
    out = dict.fromkeys(grams, ngram_weight(grams))
    out.update(dict.fromkeys(shapes, 1.0))
    return out
