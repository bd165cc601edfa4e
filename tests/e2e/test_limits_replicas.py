"""Rate limits across replicas: two ``shipyard serve`` processes share one Redis (state) and one
record database, and a tenant's limits, set with ``shipyard tenants set-limits``, hold across
both — requests alternated between them are counted together, tokens spent on one refuse a run
on the other, and a run in flight on one fills the tenant's cap on the other."""

from __future__ import annotations

import concurrent.futures
import json
import os
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import missing_service
from tests.e2e.test_sessions_replicas import REDIS_URL, reachable, start_pair
from tests.servers import ServerProcess

pytestmark = pytest.mark.redis
GUARD_S = 30.0  # only so that a bug fails the test instead of hanging it; never a measurement


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ...]]:
    if not reachable(6379):
        missing_service(f"Redis unreachable at {REDIS_URL}")
    home = tmp_path_factory.mktemp("limits")
    env = {
        "SHIPYARD_STATE_URL": REDIS_URL,
        "SHIPYARD_DATABASE_URL": f"sqlite:///{home / 'records.db'}",
        "SHIPYARD_TENANT_CACHE_S": "0",
        "SHIPYARD_RUN_TIMEOUT_S": "8",
    }
    a, b = start_pair(home, env)
    yield a, b
    for server in (a, b):
        server.stop()


def tenant_with(server: ServerProcess, *limits: str) -> str:
    """A tenant of its own (Redis is shared with other runs), its limits set by the CLI."""
    tenant = "limits-" + os.urandom(4).hex()
    done = server.cli("tenants", "set-limits", tenant, *limits)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["policy"]["limits"]
    return tenant


def key_of(server: ServerProcess, tenant: str) -> str:
    done = server.cli("keys", "create", "--tenant", tenant, "--scopes", "invoke,read")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def client(server: ServerProcess, key: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.Client(base_url=server.url, headers=headers, timeout=GUARD_S)


def test_a_request_rate_holds_across_replicas(replicas: tuple[ServerProcess, ...]) -> None:
    a, b = replicas
    tenant = tenant_with(a, "--requests-per-minute", "4")
    key = key_of(a, tenant)
    with client(a, key) as on_a, client(b, key) as on_b:
        replies = [c.get("/v1/agents") for c in (on_a, on_b, on_a, on_b)]
        assert [r.status_code for r in replies] == [200] * 4
        assert [r.headers["ratelimit-remaining"] for r in replies] == ["3", "2", "1", "0"]
        refused = [on_a.get("/v1/agents"), on_b.get("/v1/agents")]
    for reply in refused:
        assert reply.status_code == 429, reply.text
        assert reply.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(reply.headers["retry-after"]) <= 15  # one request back every 15 s
        assert reply.headers["ratelimit-limit"] == "4"
        assert reply.headers["ratelimit-remaining"] == "0"
        assert int(reply.headers["ratelimit-reset"]) >= 1


def test_tokens_spent_on_one_replica_refuse_a_run_on_the_other(
    replicas: tuple[ServerProcess, ...],
) -> None:
    a, b = replicas
    tenant = tenant_with(b, "--tokens-per-minute", "10")
    key = key_of(b, tenant)
    words = {"input": "one two three four five six"}
    with client(a, key) as on_a, client(b, key) as on_b:
        assert on_a.post("/v1/agents/echo/invoke", json=words).status_code == 200
        refused = on_b.post("/v1/agents/echo/invoke", json=words)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["details"]["limit"] == "tokens"
    assert int(refused.headers["retry-after"]) >= 1


def test_runs_in_flight_are_capped_across_replicas(replicas: tuple[ServerProcess, ...]) -> None:
    a, b = replicas
    tenant = tenant_with(a, "--max-concurrent-runs", "1")
    key = key_of(a, tenant)
    with (
        client(a, key) as on_a,
        client(b, key) as on_b,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):

        def sleep_on_a() -> concurrent.futures.Future[httpx.Response]:
            return pool.submit(on_a.post, "/v1/agents/sleepy/invoke", json={"input": "x"})

        sleeping, deadline = sleep_on_a(), time.monotonic() + GUARD_S
        while time.monotonic() < deadline:  # until the sleepy run holds the tenant's one slot
            refused = on_b.post("/v1/agents/echo/invoke", json={"input": "hi"})
            if refused.status_code == 429:
                break
            assert refused.status_code == 200
            if sleeping.done():  # it came while b's run held the slot: refused, so again
                assert sleeping.result().json()["error"]["code"] == "too_many_runs"
                sleeping = sleep_on_a()
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "too_many_runs"
        assert refused.headers["ratelimit-limit"] == "1" and "retry-after" in refused.headers
        assert sleeping.result().status_code == 504  # the run timeout ends it; the slot is back
        assert on_b.post("/v1/agents/echo/invoke", json={"input": "hi"}).status_code == 200
