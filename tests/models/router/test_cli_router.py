"""``shipyard router score|eval``: JSON lines in, scores and RouteLLM metrics out, in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shipyard.cli import cli
from shipyard.models.router.learned_model import RouterWeights

EASY = "What is the capital of France?\nA. Paris\nB. Rome\nC. Oslo\nD. Bern\nAnswer:"
HARD = (
    "Statement 1 | Every group of order p^2 is abelian. Statement 2 | If H is normal in G "
    "and G/H is cyclic then G is abelian. Compute 17 * 23 + 4^3.\nA. True\nB. 455\nAnswer:"
)


def _lines(rows: list[dict[str, object]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_score_adds_a_score_and_keeps_the_rest() -> None:
    rows: list[dict[str, object]] = [{"id": 1, "prompt": EASY}, {"id": 2, "prompt": HARD}]
    result = CliRunner().invoke(cli, ["router", "score"], input=_lines(rows) + "\n")
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in out] == [1, 2]
    assert all(0 <= r["score"] <= 1 for r in out)
    assert out[1]["score"] > out[0]["score"]  # the computation needs the strong model more


def test_score_refuses_a_row_without_a_prompt() -> None:
    result = CliRunner().invoke(cli, ["router", "score"], input='{"text": "hi"}\n')
    assert result.exit_code == 1
    assert "stdin line 1" in result.output


def _row(prompt: str, strong: float, weak: float) -> dict[str, object]:
    return {
        "prompt": prompt, "strong_score": strong, "weak_score": weak,
        "strong_model": "gpt-4-1106-preview", "weak_model": "mistralai/Mixtral-8x7B-Instruct-v0.1",
        "strong_in_tokens": 100, "strong_out_tokens": 1, "weak_in_tokens": 100,
        "weak_out_tokens": 1,
    }  # fmt: skip


def test_eval_prints_the_routellm_metrics_of_a_weights_file(tmp_path: Path) -> None:
    """A router that knows which prompts are hard: the numbers worked out by hand from the
    definitions of routing_metric.py (two of four prompts need the strong model)."""
    weights = tmp_path / "weights.json.gz"
    RouterWeights({"w:hard": 50.0}, bias=-5.0).save(weights)
    rows = [_row("easy one", 1, 1), _row("hard one", 1, 0), _row("easy two", 1, 1)]
    rows += [_row("hard two", 1, 0), _row("spoiled", 1, 1) | {"contaminated": True}]
    data = tmp_path / "rows.jsonl"
    data.write_text(_lines(rows))
    result = CliRunner().invoke(cli, ["router", "eval", str(weights), str(data)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["rows"] == 4  # the contaminated row is dropped
    mine = out["router"]
    assert mine["APGR"] == pytest.approx(0.75)  # PGR 0, .5, 1, 1, 1 at 0, 1/4 ... 1
    assert mine["CPT(50%)"] == 0.25 and mine["CPT(80%)"] == 0.5
    strong, weak = (10 * 100 + 30) / 1e6, (0.6 * 100 + 0.6) / 1e6
    assert mine["saved@PGR80%"] == pytest.approx(1 - (2 * strong + 2 * weak) / (4 * strong), 1e-3)
    assert set(out) == {"rows", "decision", "random", "prompt_length", "router"}
    assert out["decision"]["p99_ms"] >= out["decision"]["p50_ms"]


def test_eval_without_a_router_uses_the_shipped_one(tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text(_lines([_row(EASY, 1, 1), _row(HARD, 1, 0)]))
    result = CliRunner().invoke(cli, ["router", "eval", str(data)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["router"]["CPT(80%)"] == 0.5  # the hard one first


def test_eval_names_a_row_without_labels(tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text(_lines([{"prompt": "x", "strong_score": 1}]))
    result = CliRunner().invoke(cli, ["router", "eval", str(data)])
    assert result.exit_code == 1
    assert "line 1: missing weak_score" in result.output
