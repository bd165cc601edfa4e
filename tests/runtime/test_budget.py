"""The cost governor in one process on the embedded stores: a run that cannot reserve is
refused (402) before any model call; past its reservation, ``deny`` fails the next call,
``warn`` lets it through, ``degrade`` sets the flag a router reads; key and agent budgets;
spending is charged and holds are released; concurrent runs never pass a shared budget.

Prices: ``scripted:priced`` costs one dollar a token, so the sums are easy to follow. Each call
of the ``caller`` agent says "hi" with ``max_tokens=100``: its worst case is 5 prompt tokens
(2 characters, and 4 for the message) and 100 answer tokens, $105; it really costs $3 (the
echo model counts one prompt word, two answer words).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import shipyard
from shipyard import RunContext, agent
from shipyard.agents.context import RunRequest
from shipyard.config import load_settings
from shipyard.errors import BudgetExceeded
from shipyard.models import prices
from shipyard.models.base import ModelRequest, ModelResponse, StreamItem, UserMessage
from shipyard.models.scripted import ScriptedModel
from shipyard.models.spend import degraded
from shipyard.models.wrapper import WrapperModel
from shipyard.runtime.budget import NANO, ceilings
from shipyard.runtime.invoke import RunOutcome
from shipyard.runtime.limits import calling_key
from shipyard.runtime.services import Services
from shipyard.stores.records.policy import Budgets, TenantPolicy
from shipyard.stores.state.meters import Level
from shipyard.telemetry.events import Event
from tests.runtime.test_task_handover import started

MODEL = ScriptedModel(echo=True, name="scripted:priced")
CALL = ModelRequest(messages=(UserMessage(content="hi"),), max_tokens=100)
WORST, REAL = 105.0, 3.0
flags: list[bool] = []


@agent("caller")
async def caller(ctx: RunContext, input: object) -> str:
    """Makes ``input`` calls (a number), noting the degrade flag after each."""
    for _ in range(int(str(input))):
        await ctx.model(MODEL).complete(CALL)
        flags.append(degraded())
    return "done"


entered = asyncio.Event()


@agent("stalls")
async def stalls(ctx: RunContext, input: object) -> str:
    """One call, then waits until it is cancelled."""
    await ctx.model(MODEL).complete(CALL)
    entered.set()
    await asyncio.sleep(60)
    return "never"


NIGHT = [datetime(2026, 12, 7, 23, 59, 58, tzinfo=UTC)]
"""The governor's clock in the midnight test (``night``), moved by ``PastMidnight``."""


class PastMidnight(WrapperModel):
    """A call that starts before midnight UTC and answers after it."""

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        async for item in self.wrapped.stream(request):
            if isinstance(item, ModelResponse):
                NIGHT[0] += timedelta(seconds=4)
            yield item


LATE = PastMidnight(MODEL)


@agent("night")
async def night(ctx: RunContext, input: object) -> str:
    """A call before midnight, one that answers after it, one after it."""
    for model in (MODEL, LATE, MODEL):
        await ctx.model(model).complete(CALL)
    return "done"


APP = shipyard.App(agents=[caller, stalls, night])


@pytest.fixture(autouse=True)
def priced() -> Iterator[None]:
    prices.register_price("scripted:priced", 1_000_000, 1_000_000)
    flags.clear()
    yield
    prices.PRICES.pop("scripted:priced", None)


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    settings = load_settings(home=tmp_path, log_events=False, tenant_cache_s=0)
    async with started(settings, APP) as running:
        yield running


async def budgets(services: Services, tenant: str, **fields: Any) -> Budgets:
    policy = TenantPolicy(budgets=Budgets(**fields))
    await services.tenants.put(tenant, policy, changed_by="test")
    return policy.budgets


async def run(
    services: Services, tenant: str, calls: int, events: list[Event] | None = None
) -> RunOutcome:
    request = RunRequest(tenant_id=tenant, agent="caller", input=str(calls))
    sinks = [events.append] if events is not None else []
    return await services.invoker.invoke(request, sinks=sinks)


async def levels(
    services: Services,
    tenant: str,
    found: Budgets,
    key: str | None = None,
    now: datetime | None = None,
    agent: str = "caller",
) -> list[Level]:
    keys = [c.meter.key for c in ceilings(tenant, found, key, agent, now)]
    return await services.state.levels(keys)


async def test_a_run_that_cannot_reserve_is_refused_before_any_model_call(
    services: Services,
) -> None:
    await budgets(services, "poor", usd_per_day=50.0, run_usd=100.0)  # its worst case
    before = len(MODEL.requests)
    with pytest.raises(BudgetExceeded) as refused:
        await run(services, "poor", 1)
    assert refused.value.status == 402 and refused.value.code == "budget_exceeded"
    assert refused.value.details["scope"] == "tenant"
    assert len(MODEL.requests) == before  # no model call was made


async def test_deny_fails_the_next_call_that_would_pass_the_runs_limit(
    services: Services,
) -> None:
    found = await budgets(services, "deny", usd_per_day=1000.0, run_usd=110.0)
    events: list[Event] = []
    before = len(MODEL.requests)
    with pytest.raises(BudgetExceeded, match=r"run's own limit of usd"):
        await run(services, "deny", 5, events)
    assert len(MODEL.requests) - before == 2  # $3 + $105 fits 110, $6 + $105 does not
    exceeded = [e for e in events if e.type == "budget.exceeded"]
    assert [e.data["policy"] for e in exceeded] == ["deny"]
    assert await levels(services, "deny", found) == [Level(int(2 * REAL * NANO), 0)]
    failed = next(e for e in events if e.type == "run.failed")
    assert failed.data["error"]["code"] == "budget_exceeded"
    assert failed.data["usage"]["cost_usd"] == pytest.approx(2 * REAL)


async def test_warn_lets_the_call_through_and_says_so_once(services: Services) -> None:
    found = await budgets(services, "warn", usd_per_day=1000.0, run_usd=110.0, policy="warn")
    events: list[Event] = []
    result = await run(services, "warn", 4, events)
    assert result.output == "done"
    assert [e.data["policy"] for e in events if e.type == "budget.exceeded"] == ["warn"]
    assert flags == [False] * 4
    assert await levels(services, "warn", found) == [Level(int(4 * REAL * NANO), 0)]


async def test_degrade_sets_the_flag_a_router_reads(services: Services) -> None:
    await budgets(services, "degrade", run_usd=110.0, policy="degrade")
    await run(services, "degrade", 4)
    assert flags == [False, False, True, True]  # from the call that would pass the limit on
    assert not degraded()  # outside the run: no flag


async def test_a_shared_budget_refuses_the_call_that_does_not_fit(services: Services) -> None:
    """No run limit: a run holds its reservation, then more as its calls need, while the
    tenant's budget has room."""
    found = await budgets(services, "grow", usd_per_day=2 * WORST + 1, reserve_usd=WORST)
    assert (await run(services, "grow", 2)).output == "done"  # holds more for its second call
    assert await levels(services, "grow", found) == [Level(int(2 * REAL * NANO), 0)]
    with pytest.raises(BudgetExceeded, match="tenant budget of usd per day"):
        await run(services, "grow", 60)  # $180 spent in the end: more than the $205 left holds
    spent = (await levels(services, "grow", found))[0]
    assert spent.held == 0 and spent.spent <= (2 * WORST + 1) * NANO


async def test_an_agents_and_a_keys_budgets_apply_to_their_runs_only(
    services: Services,
) -> None:
    await budgets(services, "scoped", agents={"caller": {"usd_per_day": 50.0}})
    with pytest.raises(BudgetExceeded) as refused:
        await run(services, "scoped", 1)
    assert refused.value.details["scope"] == "agent:caller"
    found = await budgets(services, "keyed", keys={"key_a": {"tokens_per_day": 10}})
    assert (await run(services, "keyed", 1)).output == "done"  # no key: the key's budget is not its
    token = calling_key.set("key_a")
    before = len(MODEL.requests)
    try:
        with pytest.raises(BudgetExceeded) as refused:
            await run(services, "keyed", 1)
    finally:
        calling_key.reset(token)
    assert len(MODEL.requests) == before
    assert refused.value.details == {  # the call's 105 tokens do not fit in 10 (see below)
        "policy": "deny",
        "scope": "key:key_a",
        "period": "day",
        "unit": "tokens",
        "reason": "the key:key_a budget of tokens per day",
        **_ids(refused.value),
    }
    assert await levels(services, "keyed", found, "key_a") == [Level(0, 0)]


async def test_concurrent_runs_never_pass_the_shared_budget(services: Services) -> None:
    limit = 3 * WORST
    found = await budgets(services, "crowd", usd_per_day=limit, reserve_usd=WORST)
    outcomes = await asyncio.gather(
        *(run(services, "crowd", 10) for _ in range(30)), return_exceptions=True
    )
    refused = [o for o in outcomes if isinstance(o, BudgetExceeded)]
    done = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(refused) + len(done) == len(outcomes) and refused and done
    level = (await levels(services, "crowd", found))[0]
    assert level.held == 0
    assert level.spent <= limit * NANO
    runs = await services.records.list_runs("crowd", limit=100)
    assert sum(r.cost_usd for r in runs.items) * NANO == pytest.approx(level.spent)


def _ids(error: BudgetExceeded) -> dict[str, str]:
    return {k: error.details[k] for k in ("run_id", "trace_id")}


async def test_a_cancelled_run_gives_its_hold_back(services: Services) -> None:
    found = await budgets(services, "cancel", usd_per_day=1000.0, reserve_usd=WORST)
    entered.clear()
    request = RunRequest(tenant_id="cancel", agent="stalls", input="x")
    running = asyncio.create_task(services.invoker.invoke(request))
    await asyncio.wait_for(entered.wait(), 30)
    assert await levels(services, "cancel", found) == [
        Level(int(REAL * NANO), int((WORST - REAL) * NANO))
    ]
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert await levels(services, "cancel", found) == [Level(int(REAL * NANO), 0)]


async def test_a_default_reservation_shrinks_to_what_a_small_budget_has_left(
    services: Services,
) -> None:
    """The default reservation is 20,000 tokens; a budget of 1,000 has room for the run's
    105-token call (its worst case), so the run goes ahead, holding what is left."""
    found = await budgets(services, "small", tokens_per_day=1000)
    assert (await run(services, "small", 2)).output == "done"
    assert await levels(services, "small", found) == [Level(2 * 3, 0)]
    await budgets(services, "small", tokens_per_day=6)  # all of it spent now
    before = len(MODEL.requests)
    with pytest.raises(BudgetExceeded, match="cannot reserve its budget") as refused:
        await run(services, "small", 1)
    assert len(MODEL.requests) == before
    assert refused.value.details == {  # as a call's refusal says it
        "policy": "deny",
        "scope": "tenant",
        "period": "day",
        "unit": "tokens",
        "reason": "the tenant budget of tokens per day",
        **_ids(refused.value),
    }


async def test_the_runs_own_limit_is_reserved_whole(services: Services) -> None:
    await budgets(services, "strict", tokens_per_day=1000, run_tokens=2000)
    with pytest.raises(BudgetExceeded, match="cannot reserve its budget"):
        await run(services, "strict", 1)


async def test_a_call_is_charged_to_the_day_it_is_settled_in(services: Services) -> None:
    """The run starts at 23:59:58 UTC; its second call answers after midnight, and so it and
    the third are the next day's spending. Every hold is given back."""
    assert services.governor is not None
    services.governor.clock = lambda: NIGHT[0]
    start = NIGHT[0]
    found = await budgets(services, "late", usd_per_day=1000.0, usd_per_month=5000.0)
    request = RunRequest(tenant_id="late", agent="night", input="")
    assert (await services.invoker.invoke(request)).output == "done"
    assert NIGHT[0].day == start.day + 1
    today = await levels(services, "late", found, now=start, agent="night")
    tomorrow = await levels(services, "late", found, now=NIGHT[0], agent="night")
    assert today == [Level(int(REAL * NANO), 0), Level(int(3 * REAL * NANO), 0)]
    assert tomorrow == [Level(int(2 * REAL * NANO), 0), Level(int(3 * REAL * NANO), 0)]
