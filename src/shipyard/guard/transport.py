"""The egress seam: an httpx transport that puts the policy on every request a client sends.

Every request — each redirect hop too, since httpx sends each hop through its transport — is
checked against the gate's rules (scheme, host, port, method; ``guard.rules``) before it leaves,
then goes to the inner transport, whose connections go through the address layer
(``guard.egress.GuardedBackend``: resolve once, check, connect to the checked address). The
answer is held to the gate's caps: a declared ``Content-Length`` over ``max_response_bytes`` is
refused before the body is read, a body that grows past it is cut off (``EgressDenied``), and
a request that takes longer than ``timeout_s`` from sending to its last byte is cut off
(``EgressTimeout``, an ``httpx.TimeoutException``, so callers that retry timeouts retry it).

Each request ends in one ``EgressRecord`` handed to ``report`` — when its answer is closed (read
to the end, or closed unread), or when it is denied or fails: the run's ``egress.request``
event, or a log record and metrics outside runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from shipyard.errors import EgressDenied
from shipyard.guard.rules import Gate, Limits

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class EgressRecord:
    """One outbound request as telemetry tells it (never its path, query, headers or body).

    ``allowed``: the policy let it through (it may still have failed: ``error``). A denied
    one names its ``rule`` and why (``reason``). ``bytes``: the answer body read, on the wire.
    """

    method: str
    scheme: str
    host: str
    port: int
    allowed: bool
    status: int | None = None
    bytes: int = 0
    latency_ms: float = 0.0
    rule: str | None = None
    reason: str | None = None
    error: str | None = None

    def data(self) -> dict[str, Any]:
        """The event's data: every field but those unset."""
        return {k: v for k, v in asdict(self).items() if v is not None}


Report = Callable[[EgressRecord], None]
GateSource = Callable[[], Awaitable[Gate]]


class EgressTimeout(httpx.TimeoutException):
    """A request cut off at its ``timeout_s`` cap (the rule named in the message)."""


class EgressTransport(httpx.AsyncBaseTransport):
    """Checks, caps and reports every request, then hands it to ``inner``.

    ``gate``: the rules in force, asked per request (a tenant's policy may change).
    ``report``: gets each request's record; it must not raise or block. Closing this transport
    leaves ``inner`` open: one guarded connection pool serves many of these."""

    def __init__(self, inner: httpx.AsyncBaseTransport, gate: GateSource, report: Report) -> None:
        self._inner = inner
        self._gate = gate
        self._report = report

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        port = url.port or _DEFAULT_PORTS.get(scheme, 0)
        started = time.perf_counter()
        method, host = request.method, url.host

        def record(**facts: Any) -> None:
            latency_ms = round((time.perf_counter() - started) * 1000, 3)
            with contextlib.suppress(Exception):  # telemetry must never fail a request
                self._report(
                    EgressRecord(method, scheme, host, port, latency_ms=latency_ms, **facts)
                )

        try:
            gate = await self._gate()
            gate.check(scheme, url.host, port, request.method)
            limits = gate.limits
            deadline = None if limits.timeout_s is None else _now() + limits.timeout_s
            try:
                async with asyncio.timeout_at(deadline):
                    response = await self._inner.handle_async_request(request)
            except TimeoutError:
                raise _timeout(gate, request) from None
            too_large = _check_length(response, limits, gate)
            if too_large is not None:
                await response.aclose()
                raise too_large
        except EgressDenied as exc:
            rule = exc.details.get("rule") if isinstance(exc.details, dict) else None
            record(allowed=False, rule=rule, reason=exc.message)
            raise
        except EgressTimeout as exc:
            record(allowed=False, rule=_rule(gate, "timeout_s"), reason=str(exc))
            raise
        except Exception as exc:
            record(allowed=True, error=type(exc).__name__)
            raise
        stream = _CappedStream(response, limits, gate, deadline, request, record)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=stream,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Nothing of its own to close (the inner pool is shared)."""


class _CappedStream(httpx.AsyncByteStream):
    """The answer's body under the size and time caps; reports the request once, at close."""

    def __init__(
        self,
        response: httpx.Response,
        limits: Limits,
        gate: Gate,
        deadline: float | None,
        request: httpx.Request,
        record: Callable[..., None],
    ) -> None:
        self._response = response
        assert isinstance(response.stream, httpx.AsyncByteStream)  # an async transport's
        self._stream = response.stream
        self._limits = limits
        self._gate = gate
        self._deadline = deadline
        self._request = request
        self._record = record
        self._read = 0
        self._cut: tuple[str, str] | None = None
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._stream.__aiter__()
        cap = self._limits.max_response_bytes
        while True:
            try:
                async with asyncio.timeout_at(self._deadline):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError:
                exc = _timeout(self._gate, self._request)
                self._cut = (_rule(self._gate, "timeout_s"), str(exc))
                raise exc from None
            self._read += len(chunk)
            if cap is not None and self._read > cap:
                denied = _too_large(self._gate, cap)
                self._cut = (_rule(self._gate, "max_response_bytes"), denied.message)
                raise denied
            yield chunk

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._stream.aclose()
        if self._cut is None:
            self._record(allowed=True, status=self._response.status_code, bytes=self._read)
        else:
            rule, reason = self._cut
            self._record(
                allowed=False,
                status=self._response.status_code,
                bytes=self._read,
                rule=rule,
                reason=reason,
            )


def _check_length(response: httpx.Response, limits: Limits, gate: Gate) -> EgressDenied | None:
    """The refusal of an answer whose declared length is over the cap (before reading it)."""
    cap = limits.max_response_bytes
    declared = response.headers.get("content-length", "")
    if cap is not None and declared.isdigit() and int(declared) > cap:
        return _too_large(gate, cap, declared=int(declared))
    return None


def _too_large(gate: Gate, cap: int, *, declared: int | None = None) -> EgressDenied:
    rule = _rule(gate, "max_response_bytes")
    size = f"declares {declared} bytes" if declared is not None else "is longer"
    return EgressDenied(
        f"the answer {size}; the cap is {cap} bytes (rule: {rule})", details={"rule": rule}
    )


def _timeout(gate: Gate, request: httpx.Request) -> EgressTimeout:
    rule = _rule(gate, "timeout_s")
    return EgressTimeout(
        f"the request took longer than {gate.limits.timeout_s:g}s (rule: {rule})",
        request=request,
    )


def _rule(gate: Gate, field: str) -> str:
    return gate.rule_for(field)


def _now() -> float:
    return asyncio.get_running_loop().time()


__all__ = ["EgressRecord", "EgressTimeout", "EgressTransport", "GateSource", "Report"]
