"""A small, cheap HTTP/1.1 load generator.

N keep-alive connections (asyncio protocols, no stream or HTTP-library overhead), each sending
one pre-built request, waiting for the full response, then sending it again. After a warm-up that
is not counted, responses completed during the measured window are counted and timed.
With `per_slot`, each connection slot cycles through a list of pre-built requests of its own
instead (e.g. one session per slot, which allows one turn at a time).

Also `fetch()`: a one-off request (health checks, sanity checks) over its own connection.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

_NO_BODY_STATUSES = (204, 304)


def build_request(
    method: str,
    host: str,
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    keep_alive: bool = True,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# --- response parsing ---------------------------------------------------------------------------


@dataclass
class ResponseHead:
    status: int
    body_start: int
    length: int | None  # Content-Length, None when chunked or delimited by EOF
    chunked: bool
    close: bool


def parse_head(buf: bytearray | bytes) -> ResponseHead | None:
    """The status line and headers, or None while incomplete. ValueError when malformed."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buf[:end]).split(b"\r\n")
    status_line = lines[0]
    if not status_line.startswith(b"HTTP/1.") or len(status_line) < 12:
        raise ValueError(f"bad status line: {status_line[:80]!r}")
    head = ResponseHead(int(status_line[9:12]), end + 4, None, False, False)
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == b"content-length":
            head.length = int(value)
        elif name == b"transfer-encoding":
            head.chunked = b"chunked" in value
        elif name == b"connection":
            head.close = value == b"close"
    if head.status in _NO_BODY_STATUSES or 100 <= head.status < 200:
        head.length = 0
    return head


def chunked_end(buf: bytearray | bytes, pos: int) -> int | None:
    """Index just after a chunked body starting at `pos`, or None while incomplete."""
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(bytes(buf[pos:line_end]).split(b";")[0].strip(), 16)
        pos = line_end + 2
        if size == 0:
            break
        pos += size + 2
        if len(buf) < pos:
            return None
    # Optional trailers, then an empty line.
    if buf[pos : pos + 2] == b"\r\n":
        return pos + 2
    trailer_end = buf.find(b"\r\n\r\n", pos)
    return None if trailer_end < 0 else trailer_end + 4


def response_end(buf: bytearray | bytes, head: ResponseHead) -> int | None:
    """Index just after the whole response, or None while incomplete (or delimited by EOF)."""
    if head.chunked:
        return chunked_end(buf, head.body_start)
    if head.length is None:
        return None
    end = head.body_start + head.length
    return end if len(buf) >= end else None


def decode_body(buf: bytes, head: ResponseHead) -> bytes:
    if not head.chunked:
        end = len(buf) if head.length is None else head.body_start + head.length
        return buf[head.body_start : end]
    out, pos = bytearray(), head.body_start
    while True:
        line_end = buf.index(b"\r\n", pos)
        size = int(buf[pos:line_end].split(b";")[0].strip(), 16)
        if size == 0:
            return bytes(out)
        out += buf[line_end + 2 : line_end + 2 + size]
        pos = line_end + 2 + size + 2


# --- one-off requests ---------------------------------------------------------------------------


async def fetch(
    host: str,
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    limit_s: float = 10.0,
) -> tuple[int, bytes]:
    """One request on a fresh connection: (status, decoded body). Raises OSError/TimeoutError."""
    async with asyncio.timeout(limit_s):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(build_request(method, host, port, path, headers, body, keep_alive=False))
            await writer.drain()
            data = await reader.read()
        finally:
            writer.close()
    head = parse_head(data)
    if head is None:
        raise OSError(f"incomplete response from {host}:{port}{path}: {data[:200]!r}")
    return head.status, decode_body(data, head)


# --- load ---------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    concurrency: int
    elapsed_s: float
    ok: int
    errors: int
    latencies_ms: list[float] = field(repr=False)
    error_statuses: dict[str, int]
    error_sample: str | None
    server_cpu_s: float | None
    client_cpu_s: float
    system_cpu_s: float | None  # all CPUs of the machine, busy time
    sent_per_slot: list[int] = field(default_factory=list)  # requests sent, warm-up included
    answered: int = 0  # 200s, warm-up included (each must be in the records)

    @property
    def other_cpu_s(self) -> float | None:
        """CPU used by neither the server nor this load generator (a busy machine)."""
        if self.system_cpu_s is None or self.server_cpu_s is None:
            return None
        return max(0.0, self.system_cpu_s - self.server_cpu_s - self.client_cpu_s)

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile_ms(self, q: float) -> float | None:
        """Nearest-rank percentile of successful requests' latencies."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return ordered[rank - 1]

    def summary(self) -> dict[str, Any]:
        cpu = self.server_cpu_s
        return {
            "concurrency": self.concurrency,
            "elapsed_s": round(self.elapsed_s, 3),
            "runs": self.ok,
            "answered": self.answered,
            "errors": self.errors,
            "rps": round(self.rps, 1),
            "p50_ms": _round(self.percentile_ms(50)),
            "p90_ms": _round(self.percentile_ms(90)),
            "p99_ms": _round(self.percentile_ms(99)),
            "cpu_ms_per_run": _round(cpu * 1000 / self.ok if cpu is not None and self.ok else None),
            "server_cpu_pct": _pct(cpu, self.elapsed_s),
            "client_cpu_pct": round(self.client_cpu_s * 100 / self.elapsed_s, 1),
            "other_cpu_pct": _pct(self.other_cpu_s, self.elapsed_s),
            "error_statuses": self.error_statuses,
            "error_sample": self.error_sample,
        }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _pct(cpu_s: float | None, elapsed_s: float) -> float | None:
    return None if cpu_s is None or elapsed_s <= 0 else round(cpu_s * 100 / elapsed_s, 1)


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def system_busy_seconds() -> float | None:
    """Busy CPU time of the whole machine (all CPUs), from /proc/stat; None off Linux."""
    try:
        with open("/proc/stat", "rb") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal
    return (sum(values) - values[3] - values[4]) / _CLK_TCK


class _Requests:
    """What one slot sends: its requests in turn, across reconnections."""

    def __init__(self, requests: Sequence[bytes]) -> None:
        if not requests:
            raise ValueError("a slot needs at least one request")
        self.requests = requests
        self.sent = 0

    def next(self) -> bytes:
        request = self.requests[self.sent % len(self.requests)]
        self.sent += 1
        return request


class _Run:
    """State shared by the connections of one load run."""

    def __init__(self) -> None:
        self.running = True
        self.measuring = False
        self.latencies_ns: list[int] = []
        self.errors = 0
        self.error_statuses: Counter[str] = Counter()
        self.error_sample: str | None = None
        self.clients: set[_Client] = set()
        self.answered = 0  # 200s, warm-up included

    def record(self, status: int, latency_ns: int, raw: bytes) -> None:
        self.answered += status == 200
        if not self.measuring:
            return
        if status == 200:
            self.latencies_ns.append(latency_ns)
            return
        self.record_error(str(status), raw)

    def record_error(self, kind: str, raw: bytes = b"") -> None:
        if not self.measuring:
            return
        self.errors += 1
        self.error_statuses[kind] += 1
        if self.error_sample is None:
            self.error_sample = f"{kind}: {raw[:400].decode('latin-1')}"


class _Client(asyncio.Protocol):
    def __init__(self, run: _Run, requests: _Requests) -> None:
        self.run = run
        self.requests = requests
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.sent_ns = 0
        self.inflight = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.run.clients.add(self)
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        if not self.run.running:
            self.transport.close()
            return
        self.inflight = True
        self.sent_ns = time.perf_counter_ns()
        self.transport.write(self.requests.next())

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            head = parse_head(self.buf)
            end = None if head is None else response_end(self.buf, head)
        except ValueError as exc:
            self._fail(f"protocol error ({exc})")
            return
        if head is None or end is None:
            return
        self._complete(head, end)

    def _complete(self, head: ResponseHead, end: int) -> None:
        now = time.perf_counter_ns()
        raw = bytes(self.buf[:end]) if head.status != 200 else b""
        del self.buf[:end]
        self.inflight = False
        self.run.record(head.status, now - self.sent_ns, raw)
        if head.close or self.buf:
            # Closed by the server, or it sent more than one response: start over.
            assert self.transport is not None
            self.transport.close()
        else:
            self._send()

    def _fail(self, kind: str) -> None:
        if self.inflight:
            self.inflight = False
            self.run.record_error(kind, bytes(self.buf))
        if self.transport is not None:
            self.transport.abort()

    def eof_received(self) -> bool | None:
        # A response delimited by the end of the connection.
        head = parse_head(self.buf) if self.inflight else None
        if head is not None and head.length is None and not head.chunked:
            self._complete(head, len(self.buf))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inflight:
            self.inflight = False
            self.run.record_error("connection lost", bytes(self.buf))
        self.run.clients.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)


async def _slot(run: _Run, host: str, port: int, requests: _Requests) -> None:
    loop = asyncio.get_running_loop()
    while run.running:
        try:
            _, client = await loop.create_connection(lambda: _Client(run, requests), host, port)
        except OSError as exc:
            run.record_error(f"connect: {type(exc).__name__}")
            await asyncio.sleep(0.05)
            continue
        await client.closed


async def run_load(
    host: str,
    port: int,
    request: bytes,
    *,
    concurrency: int,
    duration: float,
    warmup: float = 1.0,
    cpu_seconds: Callable[[], float | None] | None = None,
    drain_timeout: float = 5.0,
    per_slot: Sequence[Sequence[bytes]] | None = None,
) -> LoadResult:
    """Keep `concurrency` requests in flight for `warmup + duration` seconds; measure `duration`.

    Every slot sends `request`, or with `per_slot` (one list per slot, `concurrency` of them)
    cycles through its own list. `cpu_seconds` (e.g. the server's CPU time) is sampled at the
    edges of the measured window.
    """
    if per_slot is not None and len(per_slot) != concurrency:
        raise ValueError(f"per_slot has {len(per_slot)} lists for concurrency {concurrency}")
    sources = [_Requests(reqs) for reqs in per_slot or [[request]] * concurrency]
    run = _Run()
    slots = [asyncio.create_task(_slot(run, host, port, src)) for src in sources]
    try:
        await asyncio.sleep(warmup)
        cpu0 = cpu_seconds() if cpu_seconds else None
        sys0 = system_busy_seconds()
        client0 = time.process_time()
        t0 = time.perf_counter()
        run.measuring = True
        await asyncio.sleep(duration)
        run.measuring = False
        elapsed = time.perf_counter() - t0
        client_cpu = time.process_time() - client0
        cpu1 = cpu_seconds() if cpu_seconds else None
        sys1 = system_busy_seconds()
        run.running = False
        await asyncio.wait(slots, timeout=drain_timeout)
    finally:
        run.running = False
        for client in list(run.clients):
            if client.transport is not None:
                client.transport.abort()
        for task in slots:
            task.cancel()
        await asyncio.gather(*slots, return_exceptions=True)
    server_cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
    return LoadResult(
        concurrency=concurrency,
        elapsed_s=elapsed,
        ok=len(run.latencies_ns),
        errors=run.errors,
        latencies_ms=[ns / 1e6 for ns in run.latencies_ns],
        error_statuses=dict(run.error_statuses),
        error_sample=run.error_sample,
        server_cpu_s=server_cpu,
        client_cpu_s=client_cpu,
        system_cpu_s=sys1 - sys0 if sys0 is not None and sys1 is not None else None,
        sent_per_slot=[src.sent for src in sources],
        answered=run.answered,
    )
