"""The cost governor: budgets in dollars and tokens that hold under concurrency.

Budgets are the tenant policy's ``budgets`` section: the tenant's ceilings per day and month
(UTC calendar periods), each API key's and each agent's, and each run's own. They are meters
of the state store (``stores.state.meters``), shared by every replica:

1. before a run starts (its run hook, ``BudgetHook``), its reservation — its own limit, the
   worst case, else the configured ``reserve_*`` — is *held* on every meter that applies, all
   or nothing in one atomic step. No room: 402 ``budget_exceeded`` before any model call;
2. before each model call (``models.spend.BudgetedModel``), the call's worst case (its
   prompt and ``max_tokens``, else ``SHIPYARD_BUDGET_OUTPUT_TOKENS``) must fit in what the run
   holds; if not, the run holds more (within its own limit), atomically again. When it cannot,
   the run would pass its reservation and the policy says what happens: ``deny`` fails the
   call (402 ``budget_exceeded``), ``warn`` lets it through, ``degrade`` lets it through and
   sets the run's ``degraded`` flag (a router then picks only cheaper models). Each is a
   ``budget.exceeded`` event of the run;
3. after each call its real cost is charged (past the limit too: it was spent), from the
   run's hold first;
4. when the run ends — completed, failed, cancelled — what is left of its hold is released;
   a replica that crashed leaves holds that expire by themselves (``hold_ttl_s``).

A call is charged to the period (day, month) in which it is settled: a run that crosses
midnight UTC gives back its hold on the period it started in and holds call by call in the new
one. A reservation that is not the run's own limit (``reserve_*``, a guess) shrinks to what the
budget has left, so a small budget is not refused outright by a large default.

So concurrent runs can never together spend more than a budget, save what a call costs past
its own worst-case estimate. A child run (an agent called by another) spends under its
parent's budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import structlog

from shipyard.agents.context import RunContext, RunResult
from shipyard.errors import BudgetExceeded, StoreError
from shipyard.models.base import ModelRequest, Usage
from shipyard.models.prices import estimate
from shipyard.models.spend import SpendGate, current_spend
from shipyard.runtime.limits import calling_key
from shipyard.runtime.tenants import TenantPolicies
from shipyard.stores.records.policy import BudgetLimits, BudgetPolicy, Budgets
from shipyard.stores.state.meters import Meter, Meters

log = structlog.get_logger(__name__)

NANO = 1_000_000_000
"""Dollars are counted in nano-dollars: whole numbers, the same sums on every backend."""
KEEP_MARGIN_S = 86400.0
"""How long a period's meters outlive it (read by ``GET /v1/budgets`` and ``/v1/usage``)."""
Unit = Literal["usd", "tokens"]
Period = Literal["day", "month"]
UNITS: tuple[Unit, ...] = ("usd", "tokens")


@dataclass(frozen=True, slots=True)
class BudgetDefaults:
    """The server's side of budgets (``SHIPYARD_BUDGET_*``)."""

    reserve_usd: float = 0.10
    reserve_tokens: int = 20_000
    policy: BudgetPolicy = "deny"
    output_tokens: int = 1024
    hold_ttl_s: float = 360.0


@dataclass(frozen=True, slots=True)
class Ceiling:
    """One budget that applies to a run: whose (``scope``), per what, in what, and its meter."""

    scope: str
    period: Period
    unit: Unit
    meter: Meter

    def amount(self, usd: int, tokens: int) -> int:
        return usd if self.unit == "usd" else tokens


def nano(usd: float) -> int:
    return math.ceil(round(usd * NANO, 3))


def utc_now() -> datetime:
    return datetime.now(UTC)


def ceilings(
    tenant_id: str,
    budgets: Budgets,
    key_id: str | None,
    agent: str,
    now: datetime | None = None,
) -> list[Ceiling]:
    """Every budget of the tenant's policy that applies to a run of ``agent`` by ``key_id``, in
    the periods of ``now`` (default: the current time)."""
    now = now or utc_now()
    found = _of(tenant_id, "tenant", budgets, now)
    if key_id is not None and key_id in budgets.keys:
        found += _of(tenant_id, f"key:{key_id}", budgets.keys[key_id], now)
    if agent in budgets.agents:
        found += _of(tenant_id, f"agent:{agent}", budgets.agents[agent], now)
    return found


def _of(tenant_id: str, scope: str, limits: BudgetLimits, now: datetime) -> list[Ceiling]:
    if not _limited(limits):  # most tenants: no ceiling, and no periods to work out
        return []
    found: list[Ceiling] = []
    for period, tag, end in _periods(now):
        for unit in UNITS:
            value = getattr(limits, f"{unit}_per_{period}")
            if value is None:
                continue
            limit = nano(value) if unit == "usd" else int(value)
            key = f"{{{tenant_id}}}:budget:{scope}:{tag}:{unit}"
            keep_s = max(1.0, (end - now).total_seconds()) + KEEP_MARGIN_S
            found.append(Ceiling(scope, period, unit, Meter(key, limit, keep_s)))
    return found


def _limited(limits: BudgetLimits) -> bool:
    """Whether ``limits`` has any ceiling (every API request and every run asks)."""
    return not (
        limits.usd_per_day is None
        and limits.usd_per_month is None
        and limits.tokens_per_day is None
        and limits.tokens_per_month is None
    )


def day_end(now: datetime) -> float:
    """When the UTC day of ``now`` ends (a Unix time): the first period that can roll over."""
    return datetime(now.year, now.month, now.day, tzinfo=UTC).timestamp() + 86400


def _periods(now: datetime) -> list[tuple[Period, str, datetime]]:
    """(period, its tag in meter keys, when it ends) of the day and the month of ``now``."""
    month_end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return [
        ("day", f"d{now:%Y-%m-%d}", datetime.fromtimestamp(day_end(now), UTC)),
        ("month", f"m{now:%Y-%m}", month_end),
    ]


@dataclass(frozen=True, slots=True)
class Standing:
    """One budget as it stands now: its limit, what was spent, held by runs, and left."""

    scope: str
    period: Period
    unit: Unit
    limit: float
    spent: float
    held: float
    remaining: float


def every_ceiling(tenant_id: str, budgets: Budgets, now: datetime | None = None) -> list[Ceiling]:
    """The tenant's budgets, each key's and each agent's."""
    now = now or utc_now()
    found = _of(tenant_id, "tenant", budgets, now)
    for key_id, limits in budgets.keys.items():
        found += _of(tenant_id, f"key:{key_id}", limits, now)
    for agent, limits in budgets.agents.items():
        found += _of(tenant_id, f"agent:{agent}", limits, now)
    return found


class Governor:
    """Opens each run's budget (``open_run``) and reads budgets' levels for the API."""

    def __init__(
        self,
        store: Meters,
        tenants: TenantPolicies,
        defaults: BudgetDefaults,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """``clock``: the time that names budgets' periods (a test moves it past midnight)."""
        self.store = store
        self.tenants = tenants
        self.defaults = defaults
        self.clock = clock
        self.hook = BudgetHook(self)

    async def budgets(self, tenant_id: str) -> Budgets:
        return (await self.tenants.policy(tenant_id)).budgets

    async def standing(
        self, tenant_id: str, budgets: Budgets, found: list[Ceiling] | None = None
    ) -> list[Standing]:
        """How each of the tenant's budgets (or of ``found``) stands, read from the store."""
        found = every_ceiling(tenant_id, budgets, self.clock()) if found is None else found
        if not found:
            return []
        levels = await self.store.levels([c.meter.key for c in found])
        return [
            _standing(c, level.spent, level.held) for c, level in zip(found, levels, strict=True)
        ]

    async def open_run(self, ctx: RunContext) -> RunBudget | None:
        """Hold the run's reservation on every budget that applies (None: no budget does);
        ``BudgetExceeded`` when one has no room for it."""
        budgets = await self.budgets(ctx.tenant_id)
        key_id, now = calling_key.get(), self.clock()
        found = ceilings(ctx.tenant_id, budgets, key_id, ctx.agent, now)
        if not found and budgets.run_usd is None and budgets.run_tokens is None:
            return None
        run = RunBudget(self, ctx, found, budgets, key_id, day_end(now))
        await run.reserve()
        return run


@dataclass(slots=True, eq=False)
class RunBudget:
    """One run's budget: what it holds and spent (nano-dollars, tokens); its ``SpendGate``."""

    governor: Governor
    ctx: RunContext
    ceilings: list[Ceiling]
    budgets: Budgets
    key_id: str | None
    until: float
    """When the ceilings' first period ends (``day_end``): a call settled later rolls over."""
    held: list[int] = field(default_factory=lambda: [0, 0])
    spent: list[int] = field(default_factory=lambda: [0, 0])
    degraded: bool = False
    _told: bool = False

    @property
    def policy(self) -> BudgetPolicy:
        return self.budgets.policy or self.governor.defaults.policy

    @property
    def limits(self) -> tuple[int | None, int | None]:
        usd, tokens = self.budgets.run_usd, self.budgets.run_tokens
        return (None if usd is None else nano(usd)), tokens

    async def reserve(self) -> None:
        """Hold the run's first reservation, or refuse the run (402). The run's own limit is
        held whole; a configured or default reservation, a guess, shrinks to what is left."""
        budgets, defaults = self.budgets, self.governor.defaults
        usd = budgets.run_usd if budgets.run_usd is not None else budgets.reserve_usd
        tokens = budgets.run_tokens or budgets.reserve_tokens or defaults.reserve_tokens
        want = [nano(defaults.reserve_usd if usd is None else usd), tokens]
        refused = await self._hold(*want)
        if refused is not None:
            shrinks = (budgets.run_usd is None, budgets.run_tokens is None)
            refused = await self._hold_what_is_left(want, shrinks)
        if refused is not None:
            raise self._exceeded(refused, "cannot reserve its budget")

    async def _hold_what_is_left(self, want: list[int], shrinks: tuple[bool, bool]) -> int | None:
        """Hold, of each unit that ``shrinks``, at most what its tightest budget has left (none
        left: refused, the index of that budget); the rest whole. One more atomic hold: a run
        that lost the room to another in between is refused."""
        levels = await self.governor.store.levels([m.key for m in self._meters])
        amounts = list(want)
        for i, ceiling in enumerate(self.ceilings):
            unit = UNITS.index(ceiling.unit)
            left = ceiling.meter.limit - levels[i].spent - levels[i].held
            if left <= 0:
                return i
            if shrinks[unit]:
                amounts[unit] = min(amounts[unit], left)
        return await self._hold(*amounts)

    async def before_call(self, model: str, request: ModelRequest) -> None:
        await self._roll_over()
        worst = estimate(model, request, self.governor.defaults.output_tokens)
        need = [nano(worst.cost_usd), worst.prompt_tokens + worst.completion_tokens]
        about = self._within_limits(need) or await self._grow(need)
        if about is not None:
            self._over(about, model)

    async def after_call(self, model: str, usage: Usage) -> None:
        await self._roll_over()
        used = [nano(usage.cost_usd), usage.prompt_tokens + usage.completion_tokens]
        for i in (0, 1):
            self.spent[i] += used[i]
            self.held[i] -= min(self.held[i], used[i])
        if self.ceilings:
            amounts = [c.amount(*used) for c in self.ceilings]
            try:
                await self.governor.store.charge(self._meters, self.ctx.run_id, amounts)
            except StoreError as exc:  # the call was made: the run goes on, the log says why
                log.warning("cannot charge a model call", run_id=self.ctx.run_id, error=exc.message)

    async def close(self) -> None:
        if not self.ceilings:
            return
        try:
            await self.governor.store.release([m.key for m in self._meters], self.ctx.run_id)
        except StoreError as exc:  # the hold expires by itself
            log.warning("cannot release a run's budget", run_id=self.ctx.run_id, error=exc.message)

    async def _roll_over(self) -> None:
        """Past the end of the day its ceilings are of: give the hold on the old periods back
        and take the new periods' ceilings; the next call holds there (``_grow``)."""
        if not self.ceilings:
            return
        now = self.governor.clock()
        if now.timestamp() < self.until:
            return
        await self.close()
        budgets, ctx = self.budgets, self.ctx
        self.ceilings = ceilings(ctx.tenant_id, budgets, self.key_id, ctx.agent, now)
        self.until = day_end(now)
        self.held = [0, 0]

    @property
    def _meters(self) -> list[Meter]:
        return [c.meter for c in self.ceilings]

    def _within_limits(self, need: list[int]) -> dict[str, str] | None:
        for i, limit in enumerate(self.limits):
            if limit is not None and self.spent[i] + need[i] > limit:
                unit = ("usd", "tokens")[i]
                return {"scope": "run", "unit": unit, "reason": f"the run's own limit of {unit}"}
        return None

    async def _grow(self, need: list[int]) -> dict[str, str] | None:
        """Hold more when the call's worst case does not fit in what the run holds."""
        grow = [max(0, need[i] - self.held[i]) for i in (0, 1)]
        if not any(grow) or not self.ceilings:
            return None
        refused = await self._hold(*grow)
        return None if refused is None else _about(self.ceilings[refused])

    async def _hold(self, usd: int, tokens: int) -> int | None:
        if not self.ceilings:
            return None
        amounts = [c.amount(usd, tokens) for c in self.ceilings]
        ttl_s = self.governor.defaults.hold_ttl_s
        refused = await self.governor.store.hold(
            self._meters, self.ctx.run_id, amounts, ttl_s=ttl_s
        )
        if refused is None:
            self.held[0] += usd
            self.held[1] += tokens
        return refused

    def _over(self, about: dict[str, str], model: str) -> None:
        """The run would pass its reservation: the policy's answer."""
        policy = self.policy
        if not self._told or policy == "deny":
            self._told = True
            self.ctx.emit("budget.exceeded", policy=policy, model=model, **about)
        if policy == "deny":
            message = f"the next model call would pass {about['reason']}"
            raise BudgetExceeded(message, details={"policy": policy, **about})
        if policy == "degrade":
            self.degraded = True

    def _exceeded(self, index: int, what: str) -> BudgetExceeded:
        about = _about(self.ceilings[index])  # details as a call's refusal gives them
        return BudgetExceeded(
            f"the run {what}: {about['reason']} has no room left",
            details={"policy": self.policy, **about},
        )


def _standing(ceiling: Ceiling, spent: int, held: int) -> Standing:
    scale = NANO if ceiling.unit == "usd" else 1
    limit = ceiling.meter.limit
    return Standing(
        ceiling.scope,
        ceiling.period,
        ceiling.unit,
        limit=limit / scale,
        spent=spent / scale,
        held=held / scale,
        remaining=max(0, limit - spent - held) / scale,
    )


def _about(ceiling: Ceiling) -> dict[str, str]:
    """What a refusal says of the budget without room (its ``reason`` for the message)."""
    return {
        "scope": ceiling.scope,
        "period": ceiling.period,
        "unit": ceiling.unit,
        "reason": f"the {ceiling.scope} budget of {ceiling.unit} per {ceiling.period}",
    }


class BudgetHook:
    """The governor's run hook (``runtime.hooks.RunHook``): holds before, releases after."""

    def __init__(self, governor: Governor) -> None:
        self._governor = governor
        self._open: dict[str, tuple[RunBudget, object]] = {}

    async def before(self, ctx: RunContext) -> None:
        if ctx.request.parent_run_id is not None and current_spend.get() is not None:
            return  # a child run in its parent's context spends under the parent's budget
        run = await self._governor.open_run(ctx)
        if run is not None:
            gate: SpendGate = run
            self._open[ctx.run_id] = (run, current_spend.set(gate))

    async def after(self, ctx: RunContext, ended: RunResult | BaseException) -> None:
        opened = self._open.pop(ctx.run_id, None)
        if opened is None:
            return
        run, token = opened
        try:
            current_spend.reset(token)  # type: ignore[arg-type]
        except ValueError:  # ``after`` ran in another context than ``before``
            current_spend.set(None)
        await run.close()
