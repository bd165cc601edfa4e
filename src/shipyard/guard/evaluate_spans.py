"""Scoring and measuring span detectors (PII, secrets) on JSON lines: ``shipyard guard score``
and ``shipyard guard eval`` call these (docs/guards.md).

A gold span counts as found when a finding of the same type covers at least half of it; a
finding counts as right when at least half of it lies in a gold span of the same type. Half,
not exact bounds: whether "Apt. 4" belongs to an address or a trailing full stop to a name
changes nothing for a redaction, while a finding that misses half the value leaks it. Gold
types the detector does not report (TITLE, ORGANIZATION...) are left out of recall.
Latency is process CPU time per text (not wall clock: the machine is shared), for each row and
for 2 KB texts built by joining rows.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from shipyard.guard.base import Detector, Finding

CHUNK = 2048
"""The text size the latency target is stated for (p99 ≤ 10 ms per 2 KB)."""


def score_lines(detector: Detector, lines: Iterable[str]) -> Iterator[str]:
    """Each JSON line with ``found: [{start, end, type}]`` added; blank lines are skipped, a
    line that is not a JSON object with a string ``text`` gets ``error`` instead."""
    for line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text = row["text"]
            if not isinstance(text, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            yield json.dumps({"error": "each line must be a JSON object with a string 'text'"})
            continue
        found = [{"start": f.start, "end": f.end, "type": f.type} for f in detector.scan(text)]
        yield json.dumps({**row, "found": found}, ensure_ascii=False)


def _covered(span: tuple[int, int], others: Iterable[tuple[int, int]]) -> bool:
    start, end = span
    inside = sum(max(0, min(end, e) - max(start, s)) for s, e in others)
    return inside * 2 >= end - start


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    if not samples_ns:
        return {"p50_ms": 0.0, "p99_ms": 0.0}
    ordered = sorted(samples_ns)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": statistics.median(ordered) / 1e6, "p99_ms": p99 / 1e6}


def _timed(detector: Detector, text: str) -> tuple[list[Finding], int]:
    began = time.process_time_ns()
    found = detector.scan(text)
    return found, time.process_time_ns() - began


def _chunks(texts: list[str]) -> list[str]:
    """2 KB texts made of whole rows joined by newlines (the last, shorter one is dropped)."""
    chunks, current = [], ""
    for text in texts:
        current = f"{current}\n{text}" if current else text
        if len(current) >= CHUNK:
            chunks.append(current[:CHUNK])
            current = ""
    return chunks


def evaluate(
    detector: Detector,
    rows: Iterable[Mapping[str, Any]],
    types: Iterable[str] | None = None,
    match_type: bool = True,
) -> dict[str, Any]:
    """Per-type precision and recall over rows with ``spans``, and latency.

    ``types``: the types the detector can report (gold spans of other types are not counted);
    by default those it reported. ``match_type=False`` (secrets: whether a key is called
    ``STRIPE_KEY`` or ``STRIPE_ACCESS_KEY`` changes nothing) matches spans of any type, and
    counts every gold type.
    """
    tp_gold: Counter[str] = Counter()
    gold_n: Counter[str] = Counter()
    tp_found: Counter[str] = Counter()
    found_n: Counter[str] = Counter()
    per_text: list[int] = []
    texts: list[str] = []
    for row in rows:
        text = row["text"]
        texts.append(text)
        found, elapsed = _timed(detector, text)
        per_text.append(elapsed)
        if "spans" not in row:
            continue
        gold = [(s["start"], s["end"], s["type"]) for s in row["spans"]]
        for start, end, kind in gold:
            gold_n[kind] += 1
            same = [(f.start, f.end) for f in found if f.type == kind or not match_type]
            tp_gold[kind] += _covered((start, end), same)
        for f in found:
            found_n[f.type] += 1
            same = [(s, e) for s, e, k in gold if k == f.type or not match_type]
            tp_found[f.type] += _covered((f.start, f.end), same)
    reported = (
        set(types) if types is not None else set(found_n) | (set() if match_type else set(gold_n))
    )
    by_type = {}
    for kind in sorted(reported | (set(gold_n) & reported)):
        by_type[kind] = {
            "gold": gold_n[kind],
            "found": found_n[kind],
            "precision": round(tp_found[kind] / found_n[kind], 4) if found_n[kind] else None,
            "recall": round(tp_gold[kind] / gold_n[kind], 4) if gold_n[kind] else None,
        }
    total_found = sum(found_n[k] for k in reported)
    total_gold = sum(gold_n[k] for k in reported)
    chunk_times = [_timed(detector, chunk)[1] for chunk in _chunks(texts)]
    return {
        "detector": detector.name,
        "rows": len(texts),
        "precision": round(sum(tp_found[k] for k in reported) / total_found, 4)
        if total_found
        else None,
        "recall": round(sum(tp_gold[k] for k in reported) / total_gold, 4) if total_gold else None,
        "types": by_type,
        "latency_per_text": _percentiles(per_text),
        "latency_per_2kb": {**_percentiles(chunk_times), "texts": len(chunk_times)},
    }
