"""W3C traceparent parsing: valid headers are kept, bad ones start a new trace."""

from __future__ import annotations

import pytest

from shipyard.telemetry.tracecontext import TraceParent

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_valid_header_round_trips() -> None:
    parent = TraceParent.parse(VALID)
    assert parent == TraceParent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")
    assert parent.header() == VALID
    assert TraceParent.parse(VALID.upper()) == parent


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # unknown version
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero span id
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
    ],
)
def test_bad_headers_are_ignored(header: str | None) -> None:
    assert TraceParent.parse(header) is None


def test_new_parents_are_valid_and_distinct() -> None:
    a, b = TraceParent.new(), TraceParent.new()
    assert TraceParent.parse(a.header()) == a and a.trace_id != b.trace_id
