"""Offline router metrics, RouteLLM-style, in plain Python (the CLI and training share them).

The definitions are those of the data set's ``routing_metric.py``: a router scores each prompt
("how much it needs the strong model"); sending the top-k prompts to the strong model for
k = 0..N gives quality Q(k) and cost C(k). PGR(k) = (Q(k) - Q_weak) / (Q_strong - Q_weak);
APGR is the area under PGR against the share of strong calls; CPT(x) the least share of strong
calls with PGR >= x; saved@PGRx = 1 - min cost with PGR >= x / cost of always strong.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PRICES: dict[str, tuple[float, float]] = {
    "gpt-4-1106-preview": (10.0, 30.0),
    "gpt4_1106_preview": (10.0, 30.0),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": (0.6, 0.6),
    "gpt-3.5-turbo-1106": (1.0, 2.0),
    "claude-instant-1.2": (0.8, 2.4),
    "gemma-7b-it": (0.1, 0.1),
    "vicuna-7b-v1.5": (0.2, 0.2),
    "gemini-2.0-flash-001": (0.1, 0.4),
    "claude-3-haiku-20240307": (0.25, 1.25),
}
"""USD per 1M tokens (input, output) of the models in the routing data (routing_metric.py's)."""


@dataclass(frozen=True, slots=True)
class Outcomes:
    """Per prompt: the strong and weak model's quality and cost."""

    qs: list[float]
    qw: list[float]
    cs: list[float]
    cw: list[float]


def _cost(row: Mapping[str, Any], side: str) -> float:
    if f"{side}_cost_usd" in row:
        return float(row[f"{side}_cost_usd"])
    per_in, per_out = PRICES[str(row[f"{side}_model"])]
    return float(per_in * row[f"{side}_in_tokens"] + per_out * row[f"{side}_out_tokens"]) / 1e6


def outcomes(rows: Sequence[Mapping[str, Any]]) -> Outcomes:
    """The outcomes of labelled rows (``strong_score``, ``weak_score``, tokens or costs)."""
    return Outcomes(
        qs=[float(r["strong_score"]) for r in rows],
        qw=[float(r["weak_score"]) for r in rows],
        cs=[_cost(r, "strong") for r in rows],
        cw=[_cost(r, "weak") for r in rows],
    )


def curve(scores: Sequence[float], o: Outcomes) -> tuple[list[float], list[float], list[float]]:
    """Operating points for k = 0..N prompts sent to strong, highest score first (stable)."""
    n = len(o.qs)
    order = sorted(range(n), key=lambda i: -scores[i])
    q, c = sum(o.qw), sum(o.cw)
    quality, cost = [q / n], [c]
    for i in order:
        q += o.qs[i] - o.qw[i]
        c += o.cs[i] - o.cw[i]
        quality.append(q / n)
        cost.append(c)
    return [k / n for k in range(n + 1)], quality, cost


def summarize(scores: Sequence[float], o: Outcomes) -> dict[str, float | None]:
    """APGR, CPT(50%), CPT(80%) and the cost saved at 80% and 95% of the gap recovered."""
    frac, quality, cost = curve(scores, o)
    n = len(o.qs)
    q_strong, q_weak, c_strong = sum(o.qs) / n, sum(o.qw) / n, sum(o.cs)
    gap = q_strong - q_weak
    pgr = [(q - q_weak) / gap for q in quality]
    area = sum((frac[k + 1] - frac[k]) * (pgr[k] + pgr[k + 1]) / 2 for k in range(n))
    out: dict[str, float | None] = {"APGR": area}
    for x in (0.5, 0.8, 0.95):
        ok = [k for k in range(n + 1) if pgr[k] >= x]
        out[f"CPT({int(x * 100)}%)"] = frac[ok[0]] if ok else None
        out[f"saved@PGR{int(x * 100)}%"] = 1 - min(cost[k] for k in ok) / c_strong if ok else None
    return out


def random_baseline(o: Outcomes, runs: int = 50, seed: int = 0) -> dict[str, float | None]:
    """The mean of ``runs`` random orders (what a router that knows nothing scores)."""
    rng = random.Random(seed)
    results = [summarize([rng.random() for _ in o.qs], o) for _ in range(runs)]
    out: dict[str, float | None] = {}
    for key in results[0]:
        values = [v for r in results if (v := r[key]) is not None]
        out[key] = sum(values) / len(values) if values else None
    return out


def _length(row: Mapping[str, Any]) -> float:
    """The prompt-length baseline's score: the prompt's tokens (characters without them)."""
    return float(row.get("strong_in_tokens") or len(str(row["prompt"])))


def report(
    rows: Sequence[Mapping[str, Any]], routers: Mapping[str, Callable[[str], float]]
) -> dict[str, dict[str, float | None]]:
    """Each router's summary on ``rows`` beside the random and prompt-length baselines."""
    o = outcomes(rows)
    out = {"random": random_baseline(o)}
    out["prompt_length"] = summarize([_length(r) for r in rows], o)
    for name, score in routers.items():
        out[name] = summarize([score(r["prompt"]) for r in rows], o)
    return out
