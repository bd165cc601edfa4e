"""Binary detection metrics in plain Python (the CLI and the training script share them)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


def roc_auc(labels: Sequence[bool], scores: Sequence[float]) -> float:
    """The probability that a random positive scores above a random negative (ties count
    half): the Mann-Whitney statistic, computed from ranks."""
    pairs = sorted(zip(scores, labels, strict=True))
    ranks = [0.0] * len(pairs)
    i = 0
    while i < len(pairs):
        j = i
        while j + 1 < len(pairs) and pairs[j + 1][0] == pairs[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    pos = sum(1 for _, y in pairs if y)
    neg = len(pairs) - pos
    if not pos or not neg:
        return float("nan")
    rank_sum = sum(r for r, (_, y) in zip(ranks, pairs, strict=True) if y)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def confusion(labels: Sequence[bool], scores: Sequence[float], threshold: float) -> dict[str, Any]:
    """TPR, FPR, precision and F1 of flagging at ``threshold``."""
    tp = sum(1 for y, s in zip(labels, scores, strict=True) if y and s >= threshold)
    fp = sum(1 for y, s in zip(labels, scores, strict=True) if not y and s >= threshold)
    pos = sum(labels)
    neg = len(labels) - pos
    tpr = tp / pos if pos else float("nan")
    precision = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * precision * tpr / (precision + tpr) if precision + tpr else 0.0
    return {
        "threshold": round(threshold, 4),
        "attacks": pos,
        "benign": neg,
        "tpr": round(tpr, 4),
        "fpr": round(fp / neg, 4) if neg else float("nan"),
        "precision": round(precision, 4),
        "f1": round(f1, 4),
    }


def tpr_at_fpr(labels: Sequence[bool], scores: Sequence[float], max_fpr: float) -> float:
    """The best TPR whose FPR stays at or below ``max_fpr``."""
    negatives = sorted((s for y, s in zip(labels, scores, strict=True) if not y), reverse=True)
    allowed = int(max_fpr * len(negatives))
    cut = negatives[allowed] if allowed < len(negatives) else float("-inf")
    pos = [s for y, s in zip(labels, scores, strict=True) if y]
    return sum(1 for s in pos if s > cut) / len(pos) if pos else float("nan")


def report(labels: Sequence[bool], scores: Sequence[float], threshold: float) -> dict[str, Any]:
    """Everything ``shipyard guard eval injection`` prints but latency."""
    out = confusion(labels, scores, threshold)
    out["roc_auc"] = round(roc_auc(labels, scores), 4)
    out["tpr_at_fpr_1pct"] = round(tpr_at_fpr(labels, scores, 0.01), 4)
    return out


def timed(fn: Callable[[str], float], texts: Sequence[str]) -> tuple[list[float], dict[str, float]]:
    """``fn`` over ``texts`` with the process CPU time of each call: the scores and the p50 and
    p99 latency in milliseconds (CPU time, so other processes on the machine do not count)."""
    scores: list[float] = []
    times: list[float] = []
    for text in texts:
        start = time.process_time()
        scores.append(fn(text))
        times.append((time.process_time() - start) * 1000)
    if len(times) < 2:
        times = times * 2 or [0.0, 0.0]
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return scores, {"p50_ms": round(cuts[49], 3), "p99_ms": round(cuts[98], 3)}
