"""Deployments of one candidate, circuit breakers, and retries that honour ``Retry-After``.

A candidate served by several deployments (keys, regions, servers) calls the one with the
fewest calls in flight (``least_busy``) or the lowest smoothed latency (``lowest_latency``),
skipping those whose breaker is open. A breaker opens after ``breaker_failures`` failed calls in
a row and lets one trial call through after ``breaker_reset_s``; a success closes it. Retries
on one deployment (connection errors, timeouts, 408/409/429/5xx) back off exponentially with
tenacity, or wait what the server's ``Retry-After`` says. The breaker is a small state machine
here rather than a library's decorator: the router must ask "is it open?" before it picks,
and guard streams, not only awaited calls.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential

from shipyard.errors import ModelError, ShipyardError
from shipyard.models.base import ChatModel, ModelRequest, StreamItem
from shipyard.models.router.config import Candidate, Resilience

RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
LATENCY_SMOOTHING = 0.3


@dataclass(slots=True)
class Breaker:
    """Consecutive failures of one deployment: closed, open until ``open_until``, half-open."""

    failures_to_open: int
    reset_s: float
    failures: int = 0
    open_until: float = 0.0
    trial: bool = False

    def available(self, now: float) -> bool:
        """Closed, or open long enough that one trial call may go through."""
        if self.failures < self.failures_to_open:
            return True
        return now >= self.open_until and not self.trial

    def enter(self, now: float) -> None:
        if self.failures >= self.failures_to_open and now >= self.open_until:
            self.trial = True

    def success(self) -> None:
        self.failures, self.trial = 0, False

    def failure(self, now: float) -> None:
        self.failures += 1
        self.trial = False
        if self.failures >= self.failures_to_open:
            self.open_until = now + self.reset_s

    @property
    def state(self) -> str:
        if self.failures < self.failures_to_open:
            return "closed"
        return "half_open" if time.monotonic() >= self.open_until else "open"


@dataclass(slots=True)
class Deployment:
    ref: str
    model: ChatModel
    breaker: Breaker
    inflight: int = 0
    latency_s: float = 0.0


@dataclass(slots=True)
class DeploymentPool:
    """The deployments of one candidate, and how to call one of them."""

    candidate: Candidate
    deployments: list[Deployment]
    resilience: Resilience
    _turn: int = field(default=0)

    def ordered(self) -> list[Deployment]:
        """The available deployments, the preferred first (ties taken in turn)."""
        now = time.monotonic()
        live = [d for d in self.deployments if d.breaker.available(now)]
        self._turn += 1
        n = len(self.deployments)
        turn = {id(d): (i - self._turn) % n for i, d in enumerate(self.deployments)}
        if self.candidate.pick == "lowest_latency":
            return sorted(live, key=lambda d: (d.latency_s, turn[id(d)]))
        return sorted(live, key=lambda d: (d.inflight, turn[id(d)]))

    async def open(
        self, deployment: Deployment, request: ModelRequest
    ) -> tuple[StreamItem, AsyncIterator[StreamItem]]:
        """The first item of a call on ``deployment`` (retried until one comes), and the rest
        of the stream: once an answer has begun, an error is the caller's, not retried."""
        try:  # the first attempt outside tenacity: the usual case costs no retry machinery
            return await self._first(deployment, request)
        except Exception as exc:
            res = self.resilience
            if not res.retries or not retryable(exc):
                raise
            await asyncio.sleep(_delay(exc, 1, res.backoff_s, res.max_wait_s))
        retrying = AsyncRetrying(
            stop=stop_after_attempt(res.retries),
            wait=_RetryAfter(res.backoff_s * 2, res.max_wait_s),
            retry=retry_if_exception(retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._first(deployment, request)
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    async def _first(
        self, deployment: Deployment, request: ModelRequest
    ) -> tuple[StreamItem, AsyncIterator[StreamItem]]:
        stream = self._guarded(deployment, request)
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            raise ModelError(f"{deployment.ref} ended its stream without a response") from None
        return first, stream

    async def _guarded(
        self, deployment: Deployment, request: ModelRequest
    ) -> AsyncIterator[StreamItem]:
        """The deployment's stream, counted in flight, timed, and told to its breaker."""
        started = time.monotonic()
        deployment.breaker.enter(started)
        deployment.inflight += 1
        try:
            async for item in deployment.model.stream(request):
                yield item
        except Exception:
            deployment.breaker.failure(time.monotonic())
            raise
        finally:
            deployment.inflight -= 1
        took = time.monotonic() - started
        deployment.breaker.success()
        old = deployment.latency_s
        deployment.latency_s = took if not old else old + LATENCY_SMOOTHING * (took - old)


def retryable(exc: BaseException) -> bool:
    """Worth another attempt on the same deployment: no answer, or 408/409/429/5xx."""
    if isinstance(exc, ShipyardError) and not isinstance(exc, ModelError):
        return False
    status = _status(exc)
    return status is None or status in RETRYABLE_STATUS


def _status(exc: BaseException) -> int | None:
    details: Any = getattr(exc, "details", None) or {}
    status = details.get("status") if isinstance(details, dict) else None
    if status is None:
        status = getattr(getattr(exc.__cause__, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def retry_after_s(exc: BaseException | None) -> float | None:
    """The server's ``Retry-After`` (seconds, or an HTTP date) on the error's HTTP response."""
    while exc is not None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
        value = headers.get("retry-after") if headers is not None else None
        if value:
            return _parse_retry_after(str(value))
        exc = exc.__cause__
    return None


def _parse_retry_after(value: str) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _delay(exc: BaseException | None, attempt: int, base_s: float, max_wait_s: float) -> float:
    """What the server's ``Retry-After`` says, else ``base_s`` doubled per attempt."""
    said = retry_after_s(exc)
    if said is not None:
        return min(said, max_wait_s)
    return min(base_s * 2.0 ** (attempt - 1), max_wait_s)


class _RetryAfter(wait_exponential):
    """Exponential backoff from ``base_s``, unless the server said how long to wait."""

    def __init__(self, base_s: float, max_wait_s: float) -> None:
        super().__init__(multiplier=base_s, max=max_wait_s)
        self._max = max_wait_s

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        said = retry_after_s(outcome.exception()) if outcome is not None else None
        if said is not None:
            return min(said, self._max)
        return float(super().__call__(retry_state))
