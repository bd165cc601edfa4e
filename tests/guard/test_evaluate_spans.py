"""The span evaluator's matching rule: half of a gold span covered by the same type."""

from __future__ import annotations

from shipyard.guard.base import Finding
from shipyard.guard.evaluate_spans import evaluate


class Fixed:
    """A detector that reports the same findings for every text."""

    name = "fixed"

    def __init__(self, *found: Finding) -> None:
        self.found = list(found)

    def scan(self, text: str) -> list[Finding]:
        return self.found


ROW = {"text": "x" * 40, "spans": [{"start": 10, "end": 20, "type": "PERSON"}]}


def test_half_coverage_counts_and_less_does_not() -> None:
    half = evaluate(Fixed(Finding(15, 20, "PERSON")), [ROW])
    assert half["types"]["PERSON"]["recall"] == 1.0
    assert half["types"]["PERSON"]["precision"] == 1.0
    less = evaluate(Fixed(Finding(16, 30, "PERSON")), [ROW])
    assert less["types"]["PERSON"]["recall"] == 0.0
    assert less["types"]["PERSON"]["precision"] == 0.0


def test_types_must_match_unless_told_otherwise() -> None:
    other = Fixed(Finding(10, 20, "GITHUB_TOKEN"))
    assert evaluate(other, [ROW], types=["PERSON"])["recall"] == 0.0
    assert evaluate(other, [ROW], match_type=False)["recall"] == 1.0


def test_gold_types_the_detector_does_not_report_are_not_counted() -> None:
    row = {**ROW, "spans": [*ROW["spans"], {"start": 30, "end": 35, "type": "TITLE"}]}
    report = evaluate(Fixed(Finding(10, 20, "PERSON")), [row], types=["PERSON"])
    assert report["recall"] == 1.0 and "TITLE" not in report["types"]
