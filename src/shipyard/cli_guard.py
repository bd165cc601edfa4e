"""``shipyard guard score|eval DETECTOR``: run a content guard's detector over JSON lines.

``score`` reads rows with ``text`` on stdin and writes each back with the detector's result
added; ``eval`` reads a labelled file and prints the detector's quality and latency as one
JSON object. Each detector is one entry in ``SCORERS`` and ``EVALUATORS`` (built lazily, so
a command loads only the model it uses). A line that is not a JSON object with a string
``text`` exits 1 naming the line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli_guard_spans import KnownOption, SpanKind, eval_spans, score_spans
from shipyard.cli_lines import fail, json_rows

Scorer = Callable[[str], dict[str, Any]]
"""One text to the fields added to its row (``score`` and ``flagged`` for injection)."""
Evaluator = Callable[[list[dict[str, Any]]], dict[str, Any]]
"""Labelled rows to the report ``eval`` prints."""


def _injection_scorer(threshold: float | None) -> Scorer:
    from shipyard.guard.injection import InjectionDetector

    detector = InjectionDetector(threshold)

    def score(text: str) -> dict[str, Any]:
        value = detector.score(text)
        return {"score": round(value, 4), "flagged": value >= detector.threshold}

    return score


def _injection_evaluator(threshold: float | None) -> Evaluator:
    from shipyard.guard.injection import InjectionDetector
    from shipyard.guard.injection.evaluate import report, timed

    detector = InjectionDetector(threshold)

    def evaluate(rows: list[dict[str, Any]]) -> dict[str, Any]:
        labelled = [r for r in rows if r.get("label") in ("attack", "benign")]
        if not labelled:
            raise fail("no rows labelled attack or benign")
        scores, latency = timed(detector.score, [r["text"] for r in labelled])
        labels = [r["label"] == "attack" for r in labelled]
        out = report(labels, scores, detector.threshold)
        return {"detector": "injection", **out, **latency, "skipped": len(rows) - len(labelled)}

    return evaluate


SCORERS: dict[str, Callable[[float | None], Scorer]] = {"injection": _injection_scorer}
EVALUATORS: dict[str, Callable[[float | None], Evaluator]] = {"injection": _injection_evaluator}

guard_cli = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Score texts with a content guard's detector, or measure it on labelled data.",
)

DetectorArg = Annotated[str, typer.Argument(help="The detector: injection, pii or secrets.")]
ThresholdOpt = Annotated[
    float | None,
    typer.Option(min=0.0, max=1.0, help="Flag at this score (default: the detector's own)."),
]


SPAN_DETECTORS = frozenset(kind.value for kind in SpanKind)


def _pick(table: dict[str, Callable[[float | None], Any]], name: str) -> Callable[..., Any]:
    if name not in table:
        raise fail(f"unknown detector {name!r}; choose one of: {', '.join(sorted(table))}")
    return table[name]


@guard_cli.command("score")
def score(detector: DetectorArg, threshold: ThresholdOpt = None, known: KnownOption = None) -> None:
    """Read JSON lines with 'text' on stdin; write each with the detector's result added
    ('score' and 'flagged' for injection; 'found': [{start, end, type}] for pii and secrets)."""
    if detector in SPAN_DETECTORS:
        score_spans(SpanKind(detector), known)
        return
    scorer = _pick(SCORERS, detector)(threshold)
    for row in json_rows(iter(sys.stdin), "stdin", "text"):
        row.update(scorer(row["text"]))
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
        sys.stdout.flush()


@guard_cli.command("eval")
def evaluate(
    detector: DetectorArg,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A JSON lines file.")],
    threshold: ThresholdOpt = None,
    known: KnownOption = None,
) -> None:
    """Measure the detector on labelled rows of FILE: quality and p50/p99 latency per text
    (injection: rows labelled attack/benign; pii and secrets: rows with 'spans')."""
    if detector in SPAN_DETECTORS:
        eval_spans(SpanKind(detector), file, known)
        return
    evaluator = _pick(EVALUATORS, detector)(threshold)
    with file.open(encoding="utf-8") as lines:
        rows = list(json_rows(lines, str(file), "text"))
    typer.echo(json.dumps(evaluator(rows), indent=1))
