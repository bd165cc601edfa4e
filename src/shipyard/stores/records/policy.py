"""A tenant's policy: one typed, versioned document holding every per-tenant setting.

Each section is its own model, refusing unknown fields (a typo is a 422 naming the field, not a
setting silently ignored). Every field is optional: ``None`` (or an empty section) means "no
tenant-specific value, the server's settings apply". Later issues give the sections their
effect: ``region`` (data residency), ``limits`` (rate and concurrency limits), ``retention``
(pruning), ``budgets`` (spend), ``guards`` (the guard policy) and ``egress`` (tools' network).

The policy lives low, in the records role, so that every layer above (guard, runtime, api) can
read it; its strings follow the one storable-text rule (``stores.storable``), as the API's
``Text`` fields do.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shipyard.stores.storable import StorableText, storable_value

MAX_DAYS = 100 * 366
MAX_HOSTS = 1000


PolicyText = Annotated[StorableText, Field(min_length=1, max_length=256)]
_Days = Annotated[int | None, Field(ge=1, le=MAX_DAYS)]
_Count = Annotated[int | None, Field(ge=1, le=2**31 - 1)]
_Usd = Annotated[float | None, Field(ge=0, le=1e12, allow_inf_nan=False)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Section):
    """Per-tenant limits; ``None``: the server's own limit (``SHIPYARD_LIMIT_*``, or none)
    applies. Enforced by ``runtime.limits`` in the state store, so every replica shares them."""

    requests_per_minute: _Count = Field(None, description="API requests, every key together.")
    key_requests_per_minute: _Count = Field(None, description="API requests of each key.")
    tokens_per_minute: _Count = Field(None, description="Model tokens (prompt + completion).")
    tokens_per_day: _Count = Field(None, description="Model tokens per 24 hours.")
    key_tokens_per_minute: _Count = Field(
        None, description="Model tokens of each key's runs (over HTTP) per minute."
    )
    max_concurrent_runs: _Count = Field(None, description="Runs in flight at once.")
    max_body_bytes: _Count = Field(
        None, description="Overrides SHIPYARD_MAX_BODY_BYTES for this tenant's requests."
    )


class Retention(_Section):
    """How many days each kind of data is kept; ``None``: the server's default
    (``SHIPYARD_RETENTION_*``, or kept). Enforced by the retention sweeper
    (``runtime.retention.TenantRetention``) in every store."""

    runs_days: _Days = Field(None, description="Runs (inputs, outputs) and their events.")
    events_days: _Days = Field(None, description="Run events (steps) alone; the runs stay.")
    tasks_days: _Days = Field(None, description="Finished tasks, their moves and webhooks.")
    sessions_days: _Days = Field(
        None, description="Sessions: their records and their history in the state store."
    )
    memories_days: _Days = Field(None, description="Long-term memories.")
    artifacts_days: _Days = Field(None, description="Artifacts: their records and bytes.")
    webhooks_days: _Days = Field(
        None, description="Delivered and failed webhooks in the outbox (pending ones stay)."
    )


_Tokens = Annotated[int | None, Field(ge=1, le=10**15)]
MAX_BUDGETS = 1000
BudgetPolicy = Literal["deny", "warn", "degrade"]


class BudgetLimits(_Section):
    """Spend ceilings per calendar period (UTC), in US dollars and model tokens; ``None``: no
    ceiling. Enforced by ``runtime.budget`` in the state store, so every replica shares them."""

    usd_per_day: _Usd = None
    usd_per_month: _Usd = None
    tokens_per_day: _Tokens = None
    tokens_per_month: _Tokens = None


class Budgets(BudgetLimits):
    """The tenant's ceilings (the fields of ``BudgetLimits``), each API key's (``keys``, by key
    id) and each agent's (``agents``, by name); each run's own (``run_usd``, ``run_tokens``:
    also what a run reserves before it starts); what a run reserves when it has no limit of
    its own (``reserve_*``; ``None``: the server's ``SHIPYARD_BUDGET_RESERVE_*``), and what
    happens to a run that would pass its reservation (``policy``; ``None``: the server's)."""

    keys: Annotated[dict[PolicyText, BudgetLimits], Field(max_length=MAX_BUDGETS)] = Field(
        default_factory=dict
    )
    agents: Annotated[dict[PolicyText, BudgetLimits], Field(max_length=MAX_BUDGETS)] = Field(
        default_factory=dict
    )
    run_usd: _Usd = None
    run_tokens: _Tokens = None
    reserve_usd: _Usd = None
    reserve_tokens: _Tokens = None
    policy: BudgetPolicy | None = None


class Guards(_Section):
    """The tenant's guard rules: ``settings`` is a ``shipyard.guard.policy.GuardPolicy`` as
    JSON, checked when the policy is set (``runtime.tenants``; the guard layer sits above this
    one, so the type is not named here)."""

    settings: Annotated[dict[str, Any], AfterValidator(storable_value)] = Field(
        default_factory=dict
    )


class Egress(_Section):
    """Where this tenant's tools may reach. ``None``: the server's egress policy alone; a list
    narrows it to these hosts (``*.example.com`` patterns)."""

    allow: Annotated[list[PolicyText], Field(max_length=MAX_HOSTS)] | None = None


class TenantPolicy(_Section):
    """A tenant's policy document. The default (every field unset) is what a tenant without a
    record gets."""

    region: PolicyText | None = Field(
        None, description="Where the tenant's data lives; None: the server's default region."
    )
    limits: Limits = Field(default_factory=Limits)
    retention: Retention = Field(default_factory=Retention)
    budgets: Budgets = Field(default_factory=Budgets)
    guards: Guards = Field(default_factory=Guards)
    egress: Egress = Field(default_factory=Egress)


DEFAULT_POLICY = TenantPolicy()
