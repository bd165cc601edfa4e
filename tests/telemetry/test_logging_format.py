"""The two log formats: readable console lines and one JSON object per line."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from shipyard.errors import ConfigError
from shipyard.telemetry.logging import ABSENT, configure_logging, kind_writer
from tests.telemetry.conftest import LogBuffer


def fail_and_log() -> None:
    log = structlog.get_logger("test").bind()
    log.debug("not shown")
    log.info("hello", count=1, path=Path("/srv/data"), tags={1: "one"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed", run_id="run_1")


def test_json_lines_hold_an_iso_utc_timestamp_the_level_and_a_formatted_traceback(
    log_to: Callable[..., LogBuffer],
) -> None:
    logs = log_to("info", "json")
    fail_and_log()

    hello, failed = logs.records()  # every line parses; debug is below the level
    assert {k: hello[k] for k in ("event", "level", "count", "tags")} == {
        "event": "hello",
        "level": "info",
        "count": 1,
        "tags": {"1": "one"},
    }
    assert "/srv/data" in hello["path"]  # what JSON cannot hold is written as its repr
    stamp = datetime.fromisoformat(hello["timestamp"])
    assert hello["timestamp"].endswith("Z") and stamp.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=5)
    assert (failed["event"], failed["level"], failed["run_id"]) == ("it failed", "error", "run_1")
    assert failed["exception"].startswith("Traceback (most recent call last):")
    assert failed["exception"].rstrip().endswith("ValueError: boom")


def test_console_lines_are_readable_with_a_plain_traceback(
    log_to: Callable[..., LogBuffer],
) -> None:
    logs = log_to("info", "console")
    fail_and_log()

    text = logs.stream.getvalue()
    first = text.splitlines()[0]
    assert "[info     ] hello" in first and "count=1" in first
    assert not first.startswith("{")
    assert "not shown" not in text
    assert "[error    ] it failed" in text and "run_id=run_1" in text
    assert "Traceback (most recent call last):" in text and "ValueError: boom" in text


def test_an_unknown_format_or_level_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="console"):
        configure_logging("info", "xml")
    with pytest.raises(ConfigError, match="warning"):
        configure_logging("verbose", "json")


def test_a_json_line_is_one_line_even_with_newlines_in_values(
    log_to: Callable[..., LogBuffer],
) -> None:
    logs = log_to("info", "json")
    structlog.get_logger().bind().info("multi\nline", text="a\nb")

    [record] = logs.records()
    assert (record["event"], record["text"]) == ("multi\nline", "a\nb")


def test_a_librarys_record_never_carries_a_key(log_to: Callable[..., LogBuffer]) -> None:
    """uvicorn's access and "[accepted]" lines hold the full path: its ``access_token`` query
    value, and any API key, are written as ``***``."""
    import logging

    from shipyard.telemetry.logging import flush

    logs = log_to("info", "json")
    key = "sk_shp_" + "A1b2-C3d4_" * 4
    access = logging.getLogger("uvicorn.access")
    access.warning(
        '%s - "%s %s HTTP/%s" %d', "1.2.3.4:5", "GET", f"/x?access_token={key}&a=1", "1.1", 200
    )
    logging.getLogger("uvicorn.error").warning("bearer %s seen", key)
    flush()
    text = "\n".join(logs.lines())
    assert key not in text and key[len("sk_shp_") :] not in text
    first, second = logs.records()
    assert "/x?access_token=***&a=1" in first["event"]
    assert second["event"] == "bearer sk_shp_*** seen"


FACTS: dict[str, object] = {
    "logger": "shipyard.events",
    "run_id": "run_1",
    "seq": 3,
    "input": 'say "hi" = hello',
    "usage": {"prompt_tokens": 1, "cost_usd": 0.0},
    "ok": True,
    "parent": None,
    "text": "a\nb",
}


@pytest.mark.parametrize("format", ["console", "json"])
@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING])
@pytest.mark.parametrize("ts", [1765050472.833277, 1765050472.0])
def test_the_kind_writer_writes_what_structlog_would(
    log_to: Callable[..., LogBuffer], format: str, level: int, ts: float
) -> None:
    """Run events skip structlog's chain (kind_writer): their lines must not differ."""
    logs = log_to("info", format)
    write = kind_writer(level, "run.started", list(FACTS))
    assert write is not None
    write(ts, list(FACTS.values()))
    fast = logs.lines()[-1]
    stamp = datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
    log = structlog.get_logger("x").bind(logger="shipyard.events")
    method = log.warning if level == logging.WARNING else log.info
    method("run.started", **{k: v for k, v in FACTS.items() if k != "logger"})
    slow = logs.lines()[-1]
    if format == "json":
        assert json.loads(fast) == {**json.loads(slow), "timestamp": stamp}
        assert list(json.loads(fast)) == list(json.loads(slow))
    else:
        assert fast == stamp + slow[slow.index(" ") :]


@pytest.mark.parametrize("format", ["console", "json"])
@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING])
def test_a_kind_writer_leaves_absent_fields_out(
    log_to: Callable[..., LogBuffer], format: str, level: int
) -> None:
    """The event log's writer (one per kind, keys known up front) leaves absent fields out and
    writes the rest exactly as it writes a record without them (so as structlog would)."""
    logs = log_to("info", format)
    keys = ["absent", *FACTS, "also_absent"]
    write = kind_writer(level, "run.started", keys)
    assert write is not None
    write(1765050472.833277, [ABSENT, *FACTS.values(), ABSENT])
    plain = kind_writer(level, "run.started", list(FACTS))
    assert plain is not None
    plain(1765050472.833277, list(FACTS.values()))
    fast, slow = logs.lines()[-2:]
    assert fast == slow
    assert "absent" not in fast
    with pytest.raises(ValueError, match="twice"):
        kind_writer(level, "run.started", ["seq", "seq"])


def test_the_kind_writer_is_off_below_the_level(log_to: Callable[..., LogBuffer]) -> None:
    log_to("warning", "json")
    assert kind_writer(logging.INFO, "run.started", ["seq"]) is None
    assert kind_writer(logging.WARNING, "run.started", ["seq"]) is not None
