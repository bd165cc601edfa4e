"""THE budget test: 100 concurrent runs against a budget that fits about 10, through two
``shipyard serve`` processes on one Redis. The spending recorded never passes the budget by more
than one call's price; runs are refused with 402 ``budget_exceeded`` — before any model call, or
at the call that would pass the budget — and what is held comes back when runs end."""

from __future__ import annotations

import concurrent.futures
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import missing_service
from tests.e2e.budget_app import CALL_REAL, PRICE_PER_TOKEN
from tests.e2e.test_sessions_replicas import REDIS_URL, reachable
from tests.servers import ServerProcess

pytestmark = pytest.mark.redis
GUARD_S = 60.0  # only so that a bug fails the test instead of hanging it; never a measurement
RUN_USD = 0.42  # a run's limit, and so what it reserves: its three calls' worst case fits
BUDGET_USD = 10 * RUN_USD  # fits 10 runs at once
RUNS = 100
STARTUP_S = 120.0  # two servers start on a busy machine; a guard, not a measurement
APP = "tests.e2e.budget_app:app"


def start_server(home: Path, env: dict[str, str], admin_key: str | None = None) -> ServerProcess:
    """A server of the budget app on a free port (again on another if one was taken first)."""
    home.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        server = ServerProcess(home=home, app=APP, env_extra=env, startup_s=STARTUP_S)
        if admin_key is not None:
            server.admin_key = admin_key
        try:
            return server.start()
        except RuntimeError as exc:
            if "address already in use" not in str(exc).lower() or attempt == 2:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ...]]:
    if not reachable(6379):
        missing_service(f"Redis unreachable at {REDIS_URL}")
    home = tmp_path_factory.mktemp("budgets")
    prices = home / "prices.json"
    per_million = PRICE_PER_TOKEN * 1_000_000
    prices.write_text(
        json.dumps({"scripted:metered": {"input": per_million, "output": per_million}})
    )
    env = {
        "SHIPYARD_STATE_URL": REDIS_URL,
        "SHIPYARD_DATABASE_URL": f"sqlite:///{home / 'records.db'}",
        "SHIPYARD_TENANT_CACHE_S": "0",
        "SHIPYARD_PRICES_FILE": str(prices),
        "SHIPYARD_RUN_TIMEOUT_S": "30",
    }
    a = start_server(home / "a", env)
    try:
        b = start_server(home / "b", env, admin_key=a.admin_key)
    except BaseException:
        a.stop()
        raise
    yield a, b
    for server in (a, b):
        server.stop()


def tenant_with(server: ServerProcess, *fields: str) -> tuple[str, str]:
    """A tenant of its own (Redis is shared with other runs), its budgets set by the CLI, and
    a key of it."""
    tenant = "budget-" + os.urandom(4).hex()
    done = server.cli("tenants", "set", tenant, *fields)
    assert done.returncode == 0, done.stderr
    done = server.cli("keys", "create", "--tenant", tenant, "--scopes", "invoke,read")
    assert done.returncode == 0, done.stderr
    return tenant, done.stdout.strip()


def invoke(server: ServerProcess, key: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=GUARD_S) as client:
        return client.post("/v1/agents/spender/invoke", json={"input": "go"})


def recorded_spend(server: ServerProcess, key: str) -> tuple[float, int]:
    """The tenant's spending as its run records say, and how many runs there are."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=GUARD_S) as client:
        page = client.get("/v1/runs", params={"limit": 500}).json()
    return sum(run["cost_usd"] for run in page["runs"]), len(page["runs"])


def test_concurrent_runs_on_two_replicas_never_overshoot_the_budget(
    replicas: tuple[ServerProcess, ...],
) -> None:
    a, b = replicas
    _, key = tenant_with(a, f"budgets.usd_per_day={BUDGET_USD}", f"budgets.run_usd={RUN_USD}")
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(lambda i: invoke((a, b)[i % 2], key), range(RUNS)))
    done = [r for r in replies if r.status_code == 200]
    refused = [r for r in replies if r.status_code == 402]
    assert len(done) + len(refused) == RUNS, {r.status_code for r in replies}
    assert {r.json()["error"]["code"] for r in refused} == {"budget_exceeded"}
    spent, runs = recorded_spend(b, key)
    assert runs == RUNS
    assert spent <= BUDGET_USD + CALL_REAL, spent  # never more than one call's price over
    # every run admitted had its worst case held: it ran to its end, and the runs that ended
    # gave back what they did not spend, so later runs used it
    assert len(done) * 3 * CALL_REAL == pytest.approx(spent)
    assert 10 <= len(done) <= BUDGET_USD // (3 * CALL_REAL), spent
    assert spent >= BUDGET_USD - RUN_USD, spent  # the budget was used, not refused early
