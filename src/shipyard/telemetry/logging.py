"""Process logging: structlog to stderr at ``SHIPYARD_LOG_LEVEL``, as ``SHIPYARD_LOG_FORMAT``.

``console``: readable ``key=value`` lines with plain tracebacks, for development.
``json``: one JSON object per line (orjson), with an ISO 8601 UTC ``timestamp``, the ``level``,
the ``event`` and an ``exception`` string holding the formatted traceback, for production.

Run events reach the log through :class:`shipyard.telemetry.eventlog.EventLog`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import Processor

from shipyard.errors import ConfigError

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def configure_logging(
    level: str = "info", format: str = "console", *, stream: TextIO | None = None
) -> None:
    """Configure structlog for the process: ``level`` and ``format`` are the settings'
    ``log_level`` and ``log_format``; ``stream`` defaults to stderr (tests pass their own)."""
    if level not in _LEVELS:
        raise ConfigError(f"unknown log level {level!r}; use one of {sorted(_LEVELS)}")
    if format == "console":
        renderer: list[Processor] = [
            structlog.processors.format_exc_info,
            # plain tracebacks: rich's (structlog's default when rich is installed) render every
            # frame's locals, which took seconds per error with large objects in scope
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            ),
        ]
    elif format == "json":
        renderer = [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ]
    else:
        raise ConfigError(f"unknown log format {format!r}; use 'console' or 'json'")
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=True,
    )


def _dumps(value: Any, **kwargs: Any) -> str:
    """orjson to text (the logger writes to a text stream); ``default`` is structlog's
    fallback, which turns what JSON cannot hold into its ``repr``."""
    return orjson.dumps(value, option=_JSON_OPTIONS, **kwargs).decode()
