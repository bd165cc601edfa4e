"""Process logging: structlog to stderr at ``SHIPYARD_LOG_LEVEL``, as ``SHIPYARD_LOG_FORMAT``.

``console``: readable ``key=value`` lines with plain tracebacks, for development.
``json``: one JSON object per line (orjson), with an ISO 8601 UTC ``timestamp``, the ``level``,
the ``event`` and an ``exception`` string holding the formatted traceback, for production.

Records are buffered and written every ``FLUSH_S`` (warnings and errors at once): a process
killed with SIGKILL loses at most the last ``FLUSH_S`` of info records.

Run events reach the log through :class:`shipyard.telemetry.eventlog.EventLog`.

Credentials never reach the log from a library's records: an ``access_token=`` query value (a
browser's WebSocket key, in uvicorn's "[accepted]" and access lines) and anything shaped like an
API key (``sk_shp_...``) are replaced by ``***``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
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
    stamp: list[Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    factory = _BufferedLoggerFactory(stream or _buffered_stderr())
    global _current
    _current = _Current(format, _LEVELS[level], factory())
    structlog.configure(
        processors=[*stamp, *renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=factory,
        # not cached: a cached module logger keeps the processors of its first use, which
        # structlog.testing.capture_logs cannot then see; run events (the hot path) bypass
        # this chain (kind_writer), the rest logs rarely
        cache_logger_on_first_use=False,
    )
    _route_stdlib(factory(), _LEVELS[level], stamp, renderer)


@dataclass(frozen=True, slots=True)
class _Current:
    format: str
    level: int
    out: _BufferedLogger


_current: _Current | None = None
"""What :func:`configure_logging` set up last (``None``: not called in this process)."""


ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()
"""A field a record of :func:`kind_writer` does not have (``None`` is a value)."""

KindWriter = Callable[[float, list[Any]], None]
"""``write(ts, values)``: one record of a kind, its values in the order of the kind's keys."""


def kind_writer(level: int, event: str, keys: Sequence[str]) -> KindWriter | None:
    """A writer of the records named ``event`` whose fields are always among ``keys`` (no key
    twice): ``write(ts, values)``, ``values[i]`` the value of ``keys[i]`` or ``ABSENT``. It
    renders the line as the configured renderer would, for a fraction of its cost (structlog's
    processor chain and its console columns were most of a run's logging CPU), with what does
    not change between records (the level and event columns, the sorted order of the keys,
    each ``key=``) worked out once. ``None`` when ``level`` is off, or when logging was not
    configured here (then go through structlog)."""
    current = _current
    if current is None or level < current.level:
        return None
    if len(set(keys)) != len(keys):
        raise ValueError(f"a key twice in {keys!r}")
    name = logging.getLevelName(level).lower()
    out = current.out
    emit = out.urgent if level >= logging.WARNING else out.msg
    if current.format == "console":
        return _console_kind(emit, f" [{name:<9}] {event:<30}", keys)
    return _json_kind(emit, event, name, keys)


def _console_kind(emit: Callable[[str], None], head: str, keys: Sequence[str]) -> KindWriter:
    """As structlog's ``ConsoleRenderer`` (no colours) writes it: ``[logger]`` after the event,
    then ``key=value`` by key (a plain string as itself unless it holds a blank, ``=`` or a
    quote, any other value as its ``repr``)."""
    logger_at = keys.index("logger") if "logger" in keys else None
    labels = tuple((f"{k}=", i) for k, i in sorted((k, i) for i, k in enumerate(keys)))
    labels = tuple((label, i) for label, i in labels if i != logger_at)
    quoted = _QUOTED.search

    def write(ts: float, values: list[Any]) -> None:
        parts = [_iso_utc(ts) + head]
        if logger_at is not None:
            logger = values[logger_at]
            if logger is not None and logger is not ABSENT:
                parts.append(f"[{logger}]")
        for label, i in labels:
            value = values[i]
            if type(value) is str and quoted(value) is None:
                parts.append(label + value)
            elif value is not ABSENT:
                parts.append(label + repr(value))
        emit(" ".join(parts))

    return write


def _json_kind(
    emit: Callable[[str], None], event: str, name: str, keys: Sequence[str]
) -> KindWriter:
    """As structlog's ``JSONRenderer`` writes it here: the fields in ``keys``' order, then
    ``event``, ``level`` and ``timestamp``."""

    def write(ts: float, values: list[Any]) -> None:
        record = {k: v for k, v in zip(keys, values, strict=True) if v is not ABSENT}
        record["event"], record["level"], record["timestamp"] = event, name, _iso_utc(ts)
        emit(_dumps(record))

    return write


_stamp_cache: list[Any] = [-1, ""]


def _iso_utc(ts: float) -> str:
    """``ts`` as structlog's ISO UTC stamper writes it, the seconds' text computed once."""
    second, micros = divmod(round(ts * 1_000_000), 1_000_000)
    if second != _stamp_cache[0]:
        _stamp_cache[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_stamp_cache[1]}.{micros:06d}Z" if micros else f"{_stamp_cache[1]}Z"


_QUOTED = re.compile("[ \t=\r\n\"']")
"""What makes structlog's ``ConsoleRenderer`` write a string as its ``repr``."""


_CREDENTIAL = re.compile(r"(?i)(access_token=)[^&\s\"']+|sk_shp_[A-Za-z0-9_\-]+")


def redact_credentials(text: str) -> str:
    """``text`` with ``access_token=`` values and API keys replaced by ``***``."""
    return _CREDENTIAL.sub(lambda m: f"{m.group(1)}***" if m.group(1) else "sk_shp_***", text)


class RedactCredentials(logging.Filter):
    """Rewrites a record whose message holds a credential (its arguments are merged in)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_credentials(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class _StdlibHandler(logging.Handler):
    """Records of libraries that log through ``logging`` (uvicorn, aio-pika...), rendered like
    ours, credentials redacted, and written to the same buffered stream."""

    def __init__(self, out: _BufferedLogger, formatter: logging.Formatter) -> None:
        super().__init__()
        self._out = out
        self.setFormatter(formatter)
        self.addFilter(RedactCredentials())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        if record.levelno >= logging.WARNING:
            self._out.urgent(line)
        else:
            self._out.msg(line)


def _route_stdlib(
    out: _BufferedLogger, level: int, stamp: list[Processor], renderer: list[Processor]
) -> None:
    """Send the root logger's records through our renderer (replacing the handler a previous
    call installed; handlers others installed, such as pytest's, stay). Libraries speak at
    warning and above (alembic's info lines are noise); uvicorn sets its own loggers' level."""
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *stamp],
    )
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _StdlibHandler)]
    root.addHandler(_StdlibHandler(out, formatter))
    root.setLevel(max(level, logging.WARNING))


FLUSH_S = 0.1
"""Longest an info record waits in the buffer; warnings and errors are written at once."""

_lock = threading.Lock()
_streams: list[TextIO] = []  # the stream records go to now (one flusher serves it)


class _BufferedLogger:
    """Writes records into a block-buffered stream, flushed every ``FLUSH_S`` and at once for
    warnings and errors: one write syscall per batch instead of one per record (structlog's
    WriteLogger flushes every record: ~40% of a record's cost, at four records per run)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def msg(self, message: str) -> None:
        with _lock:
            self._stream.write(message + "\n")

    def urgent(self, message: str) -> None:
        with _lock:
            self._stream.write(message + "\n")
            self._stream.flush()

    log = debug = info = msg
    warn = warning = err = error = critical = exception = fatal = failure = urgent


class _BufferedLoggerFactory:
    def __init__(self, stream: TextIO) -> None:
        self._logger = _BufferedLogger(stream)
        with _lock:
            _streams[:] = [stream]
        _start_flusher()

    def __call__(self, *args: Any) -> _BufferedLogger:
        return self._logger


def _buffered_stderr() -> TextIO:
    """stderr's file, block-buffered (``sys.stderr`` itself is line-buffered)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by something without a file
        return sys.stderr
    return open(
        fd, "w", buffering=1 << 16, encoding="utf-8", errors="backslashreplace", closefd=False
    )


def flush() -> None:
    with _lock:
        for stream in _streams:
            with contextlib.suppress(ValueError, OSError):
                stream.flush()


def flush_before_signals(*signals: signal.Signals) -> None:
    """Flush the log when one of ``signals`` ends the process, then let it act as before.

    For uvicorn: after a graceful shutdown it puts back the handlers it found and raises the
    signal again, so the process ends by the signal and ``atexit`` never runs.
    """
    for sig in signals:
        previous = signal.getsignal(sig)

        def handler(
            signum: int, frame: FrameType | None, previous: Any = previous, sig: Any = sig
        ) -> None:
            flush()
            if callable(previous):
                previous(signum, frame)
            else:
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
                signal.raise_signal(sig)

        signal.signal(sig, handler)


_flusher: threading.Thread | None = None


def _start_flusher() -> None:
    global _flusher
    if _flusher is not None:
        return

    def run() -> None:
        while True:
            time.sleep(FLUSH_S)
            flush()

    _flusher = threading.Thread(target=run, name="shipyard-log-flush", daemon=True)
    _flusher.start()
    atexit.register(flush)


def _dumps(value: Any, **kwargs: Any) -> str:
    """orjson to text (the logger writes to a text stream); ``default`` is structlog's
    fallback, which turns what JSON cannot hold into its ``repr``."""
    return orjson.dumps(value, option=_JSON_OPTIONS, **kwargs).decode()
