"""The harness's verdicts: a row whose runs or tasks are not in the records is INVALID, and no
target passes on an invalid row (issue 19: nothing lost and nothing imagined)."""

from __future__ import annotations

from typing import Any

from bench import shipped, tasks
from bench.records import Check


def _invoke_row(target: str, c: int, rps: float, cpu: float, p50: float) -> dict[str, Any]:
    row = {"target": target, "concurrency": c, "rps": rps, "cpu_ms_per_run": cpu, "p50_ms": p50}
    row["errors"] = 0
    return row


def test_runs_answered_but_not_recorded_make_the_row_invalid() -> None:
    row: dict[str, Any] = {}
    Check("runs", 1000, before={"succeeded": 50}, after={"succeeded": 999}).apply(row)
    assert row["check"] == "INVALID"
    assert row["recorded"] == 949
    assert "949 runs succeeded" in row["invalid"]


def test_runs_failed_in_the_records_do_not_count_as_succeeded() -> None:
    row: dict[str, Any] = {}
    Check("runs", 10, before={}, after={"succeeded": 5, "failed": 5}).apply(row)
    assert row["check"] == "INVALID"


def test_more_runs_recorded_than_counted_is_valid() -> None:
    # A request cut off as a point ends may still be recorded.
    row: dict[str, Any] = {}
    Check("runs", 1000, before={"succeeded": 7}, after={"succeeded": 1010}).apply(row)
    assert row["check"] == "ok"


def test_a_target_without_records_is_not_checked() -> None:
    row: dict[str, Any] = {}
    Check("runs", 1000, expect_records=False).apply(row)
    assert row["check"] == "-"


def test_drained_tasks_must_have_succeeded_during_the_point() -> None:
    # The old drain rows: the records already held 3,000 succeeded tasks of an earlier point,
    # so "3,001 succeeded" was reached at once (240,794 tasks/s). Only what the point gained
    # counts, and exactly.
    stale: dict[str, Any] = {}
    Check("tasks", 3001, exact=True, before={"succeeded": 3001}, after={"succeeded": 3001}).apply(
        stale
    )
    assert stale["check"] == "INVALID"
    too_many: dict[str, Any] = {}
    Check("tasks", 3001, exact=True, before={}, after={"succeeded": 3002}).apply(too_many)
    assert too_many["check"] == "INVALID"
    exact: dict[str, Any] = {}
    Check("tasks", 3001, exact=True, before={"queued": 1}, after={"succeeded": 3001}).apply(exact)
    assert exact["check"] == "ok"


def _shipped_rows() -> list[dict[str, Any]]:
    rows = [
        _invoke_row("default", 1, 2000, 0.30, 0.70),
        _invoke_row("default", 32, 3100, 0.30, 9.0),
        _invoke_row("off", 1, 2100, 0.28, 0.65),
        _invoke_row("off", 32, 3300, 0.28, 8.0),
        _invoke_row("postgres", 1, 1500, 0.40, 1.0),
        _invoke_row("postgres", 32, 2500, 0.40, 12.0),
        _invoke_row("bare", 1, 4000, 0.16, 0.30),
        _invoke_row("bare", 32, 7000, 0.16, 4.0),
    ]
    for row in rows:
        row["check"] = "-" if row["target"] == "bare" else "ok"
    shipped.add_ratios(rows)
    return rows


def test_shipped_targets_pass_on_valid_rows() -> None:
    rows = _shipped_rows()
    assert shipped.find(rows, "default", 32)["cpu_x_bare"] == 1.875  # type: ignore[index]
    lines = shipped.report(rows, (1, 32))
    verdicts = [line for line in lines if line.startswith("target")]
    assert len(verdicts) == 5
    assert all(line.endswith("PASS") for line in verdicts), lines
    assert any(line.startswith("default/bare c=32: CPU per run 1.88x") for line in lines)


def test_an_invalid_default_row_fails_every_target_that_uses_it() -> None:
    rows = _shipped_rows()
    row = shipped.find(rows, "default", 32)
    assert row is not None
    row["check"], row["invalid"] = "INVALID", "only 0 runs succeeded in the records"
    lines = shipped.report(rows, (1, 32))
    assert "INVALID default c=32: only 0 runs succeeded in the records" in lines
    for start in ("target as shipped <=", "target observability", "target invoke with records"):
        line = next(x for x in lines if x.startswith(start))
        assert "MISS (invalid" in line, line
    assert next(x for x in lines if "p50 at c=1" in x).endswith("PASS")


def test_observability_loss_over_ten_percent_misses() -> None:
    rows = _shipped_rows()
    off = shipped.find(rows, "off", 32)
    assert off is not None
    off["rps"] = 3500.0  # default 3,100: 11.4% lost
    line = shipped.observability(rows, (1, 32))[-1]
    assert line.endswith("worst 11.4% -> MISS")


def test_missing_targets_are_misses_not_passes() -> None:
    rows = [r for r in _shipped_rows() if r["target"] != "postgres"]
    line = shipped.postgres_verdict(rows, (1, 32))
    assert line.endswith("MISS (not measured: postgres)")


def _e2e(stores: str, rate: float, check: str) -> dict[str, Any]:
    invalid = {"invalid": "0 tasks succeeded in the records, 3,000 counted"}
    return {
        **(invalid if check == "INVALID" else {}),
        "kind": "e2e",
        "broker": "rabbitmq",
        "stores": stores,
        "workers": 2,
        "rate": rate,
        "tasks": 3000,
        "elapsed_s": 2.0,
        "errors": 0,
        "check": check,
    }


def test_a_fast_but_invalid_tasks_row_misses() -> None:
    rows = [_e2e("sqlite", 240_794.0, "INVALID"), _e2e("postgres+redis", 1200.0, "ok")]
    lines = tasks.verdicts(rows, {})
    sqlite = next(x for x in lines if "(sqlite)" in x)
    assert sqlite.endswith("MISS (invalid: 0 tasks succeeded in the records, 3,000 counted)")
    assert next(x for x in lines if "(postgres+redis)" in x).endswith("PASS")


def test_skipped_production_rows_say_why() -> None:
    lines = tasks.verdicts([], {"postgres+redis": "PostgreSQL unreachable at x: refused"})
    assert any(x.endswith("MISS (PostgreSQL unreachable at x: refused)") for x in lines)


def test_tasks_not_done_in_time_or_done_twice_are_invalid() -> None:
    late: dict[str, Any] = {}
    tasks._tasks_check(late, 3000, {"succeeded": 1}, {"succeeded": 2262, "running": 739})
    assert late["check"] == "INVALID"
    assert late["invalid"] == (
        "2,261 tasks succeeded in the records, 3,000 counted (not all done within 60 s)"
    )
    twice: dict[str, Any] = {"extra_successes": 2}
    tasks._tasks_check(twice, 3000, {}, {"succeeded": 3000})
    assert twice["check"] == "INVALID"
    assert "more than once" in twice["invalid"]
