"""Deployments, retries, fallbacks and circuit breakers against real local HTTP servers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from shipyard import Agent
from shipyard.errors import RunFailure
from shipyard.models.resolver import ModelResolver
from shipyard.models.router import (
    Candidate,
    Resilience,
    Router,
    RouterModel,
    RouteScopeHook,
    Rules,
)
from shipyard.testing import run_agent
from tests.models.router.chat_server import ChatServer

FAST = Resilience(retries=1, backoff_s=0.01, breaker_failures=2, breaker_reset_s=60)


@pytest.fixture
async def servers() -> AsyncIterator[list[ChatServer]]:
    started = [await ChatServer(answer=f"server {i}").start() for i in range(3)]
    yield started
    for server in started:
        await server.stop()


def routes(events: list[Any]) -> list[dict[str, Any]]:
    return [e.data for e in events if e.type == "llm.route"]


@asynccontextmanager
async def served(router: Router) -> AsyncIterator[Agent]:
    """An agent on ``router`` (one resolver for all its runs, as in a server); the HTTP clients
    of the router's deployments are closed at the end."""
    model = ModelResolver(routers=[router]).resolve(f"router:{router.name}")
    assert isinstance(model, RouterModel)
    try:
        yield Agent("qa", model=model)
    finally:
        for pool in model.pools.values():
            for deployment in pool.deployments:
                await deployment.model.aclose()  # type: ignore[attr-defined]


async def run(agent: Agent, text: str = "hi") -> tuple[Any, list[Any]]:
    return await run_agent(agent, text, run_hooks=[RouteScopeHook()])


async def test_a_stopped_deployment_fails_over_and_its_breaker_opens(
    servers: list[ChatServer],
) -> None:
    a, b, _ = servers
    mini = Candidate("openai:gpt-4.1-mini", deployments=(a.ref(), b.ref()))
    router = Router("ha", [mini], Rules(), resilience=FAST)
    await a.stop()  # deployment a is down: connections are refused
    answers, tried = [], []
    async with served(router) as agent:
        for _ in range(4):
            result, events = await run(agent)
            answers.append(result.output)
            assert routes(events)[-1]["deployment"] == b.ref()
            tried.append([f["deployment"] for f in routes(events)[-1]["failures"]])
    assert answers == ["server 1"] * 4
    # least-busy takes turns between idle deployments: a was tried once (and retried once):
    # two failed attempts in a row opened its breaker, so later calls skip it
    assert [t for t in tried if t] == [[a.ref()]]
    assert tried[-1] == []
    assert b.requests == 4


async def test_fallbacks_in_order_when_a_candidate_fails(servers: list[ChatServer]) -> None:
    a, b, c = servers
    a.fail_status, a.fail_times = 500, 100
    b.fail_status, b.fail_times = 503, 100
    primary, second, third = a.ref("gpt-4.1"), b.ref("gpt-4.1-mini"), c.ref("gpt-4.1-nano")
    router = Router("fb", [primary], Rules(), fallbacks=[second, third], resilience=FAST)
    async with served(router) as agent:
        result, events = await run(agent)
    assert result.output == "server 2"
    route = routes(events)[0]
    assert route["chosen"] == third and route["decided"] == primary
    assert [f["model"] for f in route["failures"]] == [primary, second]
    assert "fallback from" in route["reason"]
    assert a.requests == 2 and b.requests == 2  # one retry each: 5xx is retryable


async def test_a_client_error_is_not_retried_but_falls_back(servers: list[ChatServer]) -> None:
    a, b, _ = servers
    a.fail_status, a.fail_times = 400, 100
    router = Router("cl", [a.ref("gpt-4.1")], Rules(), fallbacks=[b.ref()], resilience=FAST)
    async with served(router) as agent:
        result, _ = await run(agent)
    assert result.output == "server 1"
    assert a.requests == 1


async def test_retries_wait_what_retry_after_says(servers: list[ChatServer]) -> None:
    a, _, _ = servers
    a.fail_status, a.fail_times, a.fail_headers = 429, 1, {"Retry-After": "1"}
    router = Router("ra", [a.ref()], Rules(), resilience=FAST)
    async with served(router) as agent:
        started = time.monotonic()
        result, _ = await run(agent)
        waited = time.monotonic() - started
    assert result.output == "server 0"
    assert a.requests == 2
    assert waited >= 0.9  # the backoff alone would have waited 0.01 s


async def test_every_candidate_failing_fails_the_run(
    servers: list[ChatServer],
) -> None:
    a, _, _ = servers
    a.fail_status, a.fail_times = 500, 100
    router = Router("down", [a.ref()], Rules(), resilience=FAST)
    async with served(router) as agent:
        with pytest.raises(RunFailure, match="every candidate failed"):
            await run(agent)
