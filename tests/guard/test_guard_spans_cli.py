"""``shipyard guard score|eval pii|secrets`` on JSON lines, in process."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from shipyard.cli import cli

DATA = Path(__file__).parent / "data" / "secrets_eval.jsonl"


def test_score_pii_adds_found_spans_to_each_line() -> None:
    lines = '{"text": "mail jr@example.com", "id": 7}\n\n{"text": "nothing here"}\n'
    result = CliRunner().invoke(cli, ["guard", "score", "pii"], input=lines)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert rows[0] == {
        "text": "mail jr@example.com",
        "id": 7,
        "found": [{"start": 5, "end": 19, "type": "EMAIL_ADDRESS"}],
    }
    assert rows[1]["found"] == []


def test_score_secrets_takes_known_values() -> None:
    result = CliRunner().invoke(
        cli,
        ["guard", "score", "secrets", "--known", "s3cr3t-value"],
        input='{"text": "x s3cr3t-value"}\n',
    )
    assert json.loads(result.output)["found"] == [{"start": 2, "end": 14, "type": "KNOWN_SECRET"}]


def test_eval_reports_per_type_precision_recall_and_latency(tmp_path: Path) -> None:
    rows = tmp_path / "pii.jsonl"
    text = "Call Jennifer Reid on +44 20 7946 0958."
    spans = [
        {"start": 5, "end": 18, "type": "PERSON"},
        {"start": 22, "end": 38, "type": "PHONE_NUMBER"},
    ]
    rows.write_text(
        json.dumps({"text": text, "spans": spans})
        + "\n"
        + json.dumps({"text": "plain words"})
        + "\n"
    )
    result = CliRunner().invoke(cli, ["guard", "eval", "pii", str(rows)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["types"]["PERSON"] == {"gold": 1, "found": 1, "precision": 1.0, "recall": 1.0}
    assert report["types"]["PHONE_NUMBER"]["recall"] == 1.0
    assert report["rows"] == 2 and report["latency_per_text"]["p99_ms"] > 0
    secrets = CliRunner().invoke(cli, ["guard", "eval", "secrets", str(DATA)])
    assert json.loads(secrets.output)["recall"] >= 0.95


def test_eval_rejects_a_line_that_is_not_a_row(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n[1, 2]\n')
    result = CliRunner().invoke(cli, ["guard", "eval", "pii", str(bad)])
    assert result.exit_code == 2 and "line 2" in result.output
