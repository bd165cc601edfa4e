"""Where spans go besides the record store, chosen by the standard OpenTelemetry variables.

OTLP over HTTP (protobuf) when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set, or ``OTEL_TRACES_EXPORTER`` names ``otlp``;
``OTEL_TRACES_EXPORTER=none`` turns it off. The exporter reads its own ``OTEL_EXPORTER_OTLP_*``
settings (endpoint, headers, timeout, compression, certificates) and its batch processor the
``OTEL_BSP_*`` ones (delay, queue and batch sizes); it exports from a thread of its own.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import structlog
from opentelemetry.sdk.trace import SpanProcessor

log = structlog.get_logger(__name__)

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def otlp_wanted() -> bool:
    """Whether the standard variables ask for OTLP export."""
    names = {
        n.strip().lower()
        for n in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",")
        if n.strip()
    }
    unsupported = names - {"otlp", "none"}
    if unsupported:
        log.warning("tracing.exporter_unsupported", exporters=sorted(unsupported), supported="otlp")
    if "none" in names:
        return False
    return "otlp" in names or any(os.environ.get(name) for name in _ENDPOINTS)


def otlp_processor() -> SpanProcessor:
    """The OTLP/HTTP exporter in a batch processor (imported only when wanted)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol != "http/protobuf":
        log.warning("tracing.protocol_unsupported", protocol=protocol, using="http/protobuf")
    return BatchSpanProcessor(OTLPSpanExporter())


def shutdown(processors: Sequence[SpanProcessor]) -> None:
    """Export what is queued and stop (blocking: call it from a thread)."""
    for processor in processors:
        processor.shutdown()
