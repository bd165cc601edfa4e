"""The circuit breaker's states and how a deployment is picked (pure logic)."""

from __future__ import annotations

import time

from shipyard.models.router import Candidate, Resilience
from shipyard.models.router.deployments import (
    Breaker,
    Deployment,
    DeploymentPool,
    retry_after_s,
)
from shipyard.models.scripted import ScriptedModel


def test_a_breaker_opens_lets_one_trial_through_and_closes_on_success() -> None:
    breaker = Breaker(failures_to_open=2, reset_s=10)
    breaker.failure(100.0)
    assert breaker.available(100.0)
    breaker.failure(100.0)
    assert not breaker.available(105.0)  # open
    assert breaker.available(110.0)  # reset time passed: one trial
    breaker.enter(110.0)
    assert not breaker.available(110.0)  # only one trial at a time
    breaker.failure(110.5)  # the trial failed: open again
    assert not breaker.available(115.0)
    breaker.enter(121.0)
    breaker.success()
    assert breaker.available(121.0) and breaker.failures == 0


def _pool(pick: str) -> DeploymentPool:
    res = Resilience()
    deployments = [
        Deployment(ref, ScriptedModel(echo=True), Breaker(3, 30)) for ref in ("a", "b", "c")
    ]
    candidate = Candidate("scripted:echo", deployments=("a", "b", "c"), pick=pick)  # type: ignore[arg-type]
    return DeploymentPool(candidate, deployments, res)


def test_least_busy_and_lowest_latency_picks() -> None:
    pool = _pool("least_busy")
    pool.deployments[0].inflight, pool.deployments[1].inflight = 3, 1
    assert pool.ordered()[0].ref == "c"
    pool.deployments[2].inflight = 2
    assert [d.ref for d in pool.ordered()] == ["b", "c", "a"]
    pool = _pool("lowest_latency")
    for d, seconds in zip(pool.deployments, (0.3, 0.1, 0.2), strict=True):
        d.latency_s = seconds
    assert [d.ref for d in pool.ordered()] == ["b", "c", "a"]
    pool.deployments[1].breaker.failure(time.monotonic())
    pool.deployments[1].breaker.failures = 3
    pool.deployments[1].breaker.open_until = time.monotonic() + 30
    assert [d.ref for d in pool.ordered()] == ["c", "a"]  # b's breaker is open


class _Response:
    def __init__(self, value: str) -> None:
        self.headers = {"retry-after": value}


class _Failed(Exception):
    def __init__(self, value: str) -> None:
        super().__init__("429")
        self.response = _Response(value)


def test_retry_after_in_seconds_or_as_a_date_through_the_cause_chain() -> None:
    try:
        try:
            raise _Failed("3")
        except _Failed as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert retry_after_s(outer) == 3.0
    assert retry_after_s(_Failed("Wed, 21 Oct 2015 07:28:00 GMT")) == 0.0  # in the past
    assert retry_after_s(_Failed("soon")) is None
