"""``shipyard guard score|eval pii|secrets``: run a span detector on JSON lines, or measure it
(docs/guards.md). The functions are plain typer commands so the ``guard`` group can take them
beside the injection detector's."""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from shipyard.guard.base import Detector


class SpanKind(enum.StrEnum):
    pii = "pii"
    secrets = "secrets"


def span_detector(kind: SpanKind, known: list[str] | None = None) -> Detector:
    """The detector for ``kind`` (imported here: loading the name lists takes ~0.2 s)."""
    if kind is SpanKind.pii:
        from shipyard.guard.pii import PiiDetector

        return PiiDetector()
    from shipyard.guard.secrets_scan import SecretsDetector

    return SecretsDetector(known or [])


KnownOption = Annotated[
    list[str] | None,
    typer.Option("--known", help="A secret value to find exactly (secrets only; repeatable)."),
]


def score_spans(
    kind: Annotated[SpanKind, typer.Argument(help="pii or secrets.")],
    known: KnownOption = None,
) -> None:
    """Read JSON lines with 'text' on stdin; write each with 'found': [{start, end, type}]."""
    from shipyard.guard.evaluate_spans import score_lines

    detector = span_detector(kind, known)
    for line in score_lines(detector, sys.stdin):
        typer.echo(line)


def eval_spans(
    kind: Annotated[SpanKind, typer.Argument(help="pii or secrets.")],
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help="JSON lines with 'text' and 'spans'."),
    ],
    known: KnownOption = None,
) -> None:
    """Per-type precision and recall on rows with 'spans', and p50/p99 CPU time per text and
    per 2 KB. Secrets match spans whatever their type name."""
    from shipyard.guard.evaluate_spans import evaluate

    rows = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row.get("text"), str):
                raise ValueError
        except (ValueError, AttributeError):
            typer.secho(
                f"error: line {number} is not a JSON object with a string 'text'",
                fg="red",
                err=True,
            )
            raise typer.Exit(2) from None
        rows.append(row)
    detector = span_detector(kind, known)
    types = None
    if kind is SpanKind.pii:
        from shipyard.guard.pii import TYPES

        types = TYPES
    report = evaluate(detector, rows, types, match_type=kind is SpanKind.pii)
    typer.echo(json.dumps(report, indent=2))
