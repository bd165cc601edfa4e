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
from tests.e2e.budget_app import CALL_REAL, CALL_WORST, PRICE_PER_TOKEN
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
    print(f"budget ${BUDGET_USD:.2f}: {len(done)} runs done, {len(refused)} refused, ${spent:.4f}")
    assert runs == RUNS
    assert spent <= BUDGET_USD + CALL_REAL, spent  # never more than one call's price over
    # every run admitted had its worst case held: it ran to its end, and the runs that ended
    # gave back what they did not spend, so later runs used it
    assert len(done) * 3 * CALL_REAL == pytest.approx(spent)
    assert 10 <= len(done) <= BUDGET_USD // (3 * CALL_REAL), spent
    assert spent >= BUDGET_USD - RUN_USD, spent  # the budget was used, not refused early


def test_runs_that_hold_call_by_call_never_overshoot_either(
    replicas: tuple[ServerProcess, ...],
) -> None:
    """No run limit: each run reserves one call's worst case and holds more before each call,
    racing the others across both replicas; the calls that find no room fail the run (402)."""
    a, b = replicas
    budget = 3.0
    _, key = tenant_with(a, f"budgets.usd_per_day={budget}", f"budgets.reserve_usd={CALL_WORST}")
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(lambda i: invoke((a, b)[i % 2], key), range(RUNS)))
    codes = [r.status_code for r in replies]
    assert set(codes) <= {200, 402} and 402 in codes, set(codes)
    spent, runs = recorded_spend(a, key)
    print(f"budget ${budget:.2f}: {codes.count(200)} runs done, {codes.count(402)} refused, "
          f"${spent:.4f}")  # fmt: skip
    assert runs == RUNS
    assert spent <= budget + CALL_REAL, spent
    assert spent >= budget - 3 * CALL_WORST, spent  # refused only once the budget was used
