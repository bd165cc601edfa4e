"""``build_services``: every service of a server or worker process, wired from the settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shipyard.compose.backends import Stores, open_stores
from shipyard.compose.data import (
    build_artifacts,
    build_lifecycle,
    build_memory,
    memory_hooks,
    retention_defaults,
)
from shipyard.compose.keys import audit_key, pseudonym_key, ui_session_key
from shipyard.compose.security import (
    build_audit,
    build_egress,
    build_limiter,
    build_webhooks,
    check_tool_secrets,
    scrub_secrets,
)
from shipyard.config import Settings
from shipyard.guard.policy import GuardPolicy
from shipyard.models.cache import model_cache
from shipyard.models.prices import load_prices, price_of, register_price
from shipyard.models.resolver import ModelResolver, ModelWrapper
from shipyard.models.router import Router, RouteScopeHook
from shipyard.models.spend import BudgetedModel
from shipyard.runtime.artifacts import ArtifactService
from shipyard.runtime.audit import AuditLog
from shipyard.runtime.budget import BudgetDefaults, Governor
from shipyard.runtime.control import Control
from shipyard.runtime.delegation import Delegation
from shipyard.runtime.egress import ToolEgress
from shipyard.runtime.guards import audit_blocks
from shipyard.runtime.hooks import RunHook
from shipyard.runtime.invoke import Invoker, RunLimits
from shipyard.runtime.limits import SLOT_MARGIN_S, Limiter
from shipyard.runtime.memory import MemoryService
from shipyard.runtime.model_cache import CacheHook
from shipyard.runtime.pseudonym_keys import PseudonymKeys
from shipyard.runtime.pseudonyms import PseudonymVault
from shipyard.runtime.references import InputReferences
from shipyard.runtime.retention import session_ttl_cap
from shipyard.runtime.services import Services
from shipyard.runtime.sessions import SessionService
from shipyard.runtime.tasks import TaskService
from shipyard.runtime.tenants import TenantPolicies
from shipyard.stores.state.base import StateStore
from shipyard.telemetry.observability import Observability

if TYPE_CHECKING:
    from fastapi import FastAPI

    from shipyard.api.keys import KeyService
    from shipyard.app import App
    from shipyard.models.embedding import Embedder


@dataclass(frozen=True)
class _Runs:
    """The invoker, and the services it was built with that the routes use too."""

    invoker: Invoker
    models: ModelResolver
    egress: ToolEgress
    limiter: Limiter | None
    governor: Governor | None
    memory: MemoryService


def build_services(app: App, settings: Settings) -> Services:
    """Open the stores of ``settings`` and build every service over them (nothing connects
    until first used: ``check_stores`` pings them at start)."""
    from shipyard.app import prepare_settings

    settings = prepare_settings(settings, check=False)  # a no-op once prepared
    check_tool_secrets(app.agents, settings)
    stores = open_stores(settings)
    observability = build_observability(settings)
    audit = build_audit(stores.records, settings)
    runs = build_runs(app, settings, stores, observability, audit)
    invoker = runs.invoker
    control = Control(stores.state)  # one subscription per process, for every run's stop word
    tasks = TaskService(
        stores.records,
        stores.broker,
        invoker,
        control,
        handover_sweep_s=settings.task_handover_sweep_s,
    )
    invoker.calls = Delegation(invoker, tasks)
    artifacts = equip_runs(settings, stores, invoker)
    retention, eraser = build_lifecycle(settings, stores, artifacts, audit, runs.memory.store)
    return Services(
        agents=app.agents,
        records=stores.records,
        recorder=stores.recorder,
        invoker=invoker,
        state=stores.state,
        sessions=build_sessions(settings, stores, invoker, control),
        broker=stores.broker,
        tasks=tasks,
        webhooks=build_webhooks(settings, observability),
        control=control,
        tenants=stores.tenants,
        observability=observability,
        models=runs.models,
        egress=runs.egress,
        secrets=stores.secrets,
        limiter=runs.limiter,
        audit=audit,
        artifacts=artifacts,
        retention=retention,
        eraser=eraser,
        memory=runs.memory,
        governor=runs.governor,
    )


def equip_runs(settings: Settings, stores: Stores, invoker: Invoker) -> ArtifactService:
    """What a run reaches besides its agent: the artifacts (``ctx.artifacts``, and inputs
    that reference one) and the pseudonym vault; the artifact service, for the routes."""
    invoker.artifacts = artifacts = build_artifacts(settings, stores.records, stores.tenants)
    invoker.references = InputReferences(artifacts, max_bytes=settings.max_input_artifact_bytes)
    invoker.pseudonyms = PseudonymVault(
        stores.state,
        PseudonymKeys(pseudonym_key(settings), stores.secrets),
        ttl_s=settings.pseudonym_ttl_s,
        session_ttl_s=settings.session_ttl_s,
    )
    return artifacts


def build_runs(
    app: App, settings: Settings, stores: Stores, observability: Observability, audit: AuditLog
) -> _Runs:
    """The invoker with its models, hooks (limits, routing scope, budget, cache, memory, the
    app's own, in that order), event processors, egress and guards."""
    governor = build_governor(settings, stores.state, stores.tenants)
    memory = build_memory(settings)
    caches = model_caches(settings, stores.state, memory.embedder)
    cache = CacheHook(app.agents) if caches else None
    models = build_models(app, settings, stores, governor, caches)
    egress = build_egress(settings, stores.tenants, stores.secrets)
    limiter = build_limiter(settings, stores.state, stores.tenants)
    hooks: list[RunHook] = [
        *([limiter.hook] if limiter else []),
        *([RouteScopeHook()] if app.routers else []),  # routers see the run's tenant
        *([governor.hook] if governor else []),
        *([cache] if cache else []),
        *memory_hooks(memory, app.agents, stores.records),
        *app.run_hooks,
    ]
    limits = RunLimits(
        default_model=settings.resolved_model,
        run_timeout_s=settings.run_timeout_s,
        tool_timeout_s=settings.tool_timeout_s,
    )
    invoker = Invoker(
        app.agents,
        stores.recorder,
        limits,
        observers=[*observability.sinks, audit_blocks(audit)],
        models=models,
        processors=(*scrub_secrets(settings, stores.secrets), *app.event_processors),
        hooks=hooks,
        egress=egress,
        guards=GuardPolicy.from_setting(settings.guards),
        tenants=stores.tenants,
    )
    for served in app.agents.values():  # a policy naming a missing detector fails at start
        invoker.guard_for(served)
    return _Runs(invoker, models, egress, limiter, governor, memory)


def build_models(
    app: App,
    settings: Settings,
    stores: Stores,
    governor: Governor | None,
    caches: Sequence[ModelWrapper],
) -> ModelResolver:
    """The model resolver: prices (``SHIPYARD_PRICES_FILE``), the routers, and the wrappers —
    the budget's innermost, the caches outside it (a hit spends nothing), then the app's."""
    if settings.prices_file is not None:
        load_prices(settings.prices_file)
    price_routers(app.routers)
    wrappers: list[ModelWrapper] = [*([BudgetedModel] if governor else []), *caches]
    return ModelResolver(
        [*wrappers, *app.model_wrappers], secrets=stores.secrets, routers=app.routers
    )


def model_caches(settings: Settings, state: StateStore, embedder: Embedder) -> list[ModelWrapper]:
    """The model caches that are on, outside the budget's wrapper (a hit spends nothing): the
    semantic cache, then the exact one outermost (a hash costs less than an embedding)."""
    found: list[ModelWrapper] = []
    if settings.semantic_cache:
        from shipyard.models.embedding import create_embedder
        from shipyard.models.semantic_cache import SemanticSettings, semantic_cache

        ref = settings.semantic_cache_embedder
        if ref is not None and ref != settings.embedder:
            embedder = create_embedder(ref)
        tuning = SemanticSettings(
            threshold=settings.semantic_cache_threshold,
            ttl_s=settings.semantic_cache_ttl_s,
            entries=settings.semantic_cache_entries,
        )
        found.append(semantic_cache(state, embedder, tuning))
    if settings.model_cache:
        found.append(model_cache(state, settings.model_cache_ttl_s))
    return found


def build_sessions(
    settings: Settings, stores: Stores, invoker: Invoker, control: Control
) -> SessionService:
    return SessionService(
        stores.state,
        stores.records,
        invoker,
        default_ttl_s=settings.session_ttl_s,
        queue_s=settings.session_queue_s,
        control=control,
        max_ttl_s=session_ttl_cap(stores.tenants, retention_defaults(settings)),
    )


def price_routers(routers: Sequence[Router]) -> None:
    """A routed call is priced as its strongest candidate before it is made (the budget's
    worst case, ``models.spend``); what it really cost is settled from the chosen model's
    usage after."""
    for router in routers:
        strong = router.config.strong
        found = strong.price or price_of(strong.model)
        if found is not None:
            register_price(f"router:{router.name}", *found)


def build_governor(
    settings: Settings, state: StateStore, tenants: TenantPolicies
) -> Governor | None:
    """The cost governor (``SHIPYARD_BUDGETS``; off: None): the tenants' budgets, held in the
    state store; a run's holds outlive the longest run a little, so a crashed one's expire."""
    if not settings.budgets:
        return None
    defaults = BudgetDefaults(
        reserve_usd=settings.budget_reserve_usd,
        reserve_tokens=settings.budget_reserve_tokens,
        policy=settings.budget_policy,
        output_tokens=settings.budget_output_tokens,
        hold_ttl_s=settings.run_timeout_s + SLOT_MARGIN_S,
    )
    return Governor(state, tenants, defaults)


def build_observability(settings: Settings) -> Observability:
    """The log, metric and trace sinks the settings turn on."""
    from shipyard.telemetry.eventlog import EventLog
    from shipyard.telemetry.metrics import Metrics
    from shipyard.telemetry.tracing import Tracing

    return Observability(
        eventlog=EventLog(bodies=settings.log_level == "debug") if settings.log_events else None,
        metrics=Metrics(port=settings.metrics_port, host=settings.host)
        if settings.metrics
        else None,
        tracing=Tracing() if settings.tracing else None,
    )


def build_ui(services: Services, keys: KeyService, settings: Settings) -> FastAPI:
    """The dashboard (``api.ui``): its cookies signed with ``SHIPYARD_UI_SESSION_KEY`` or a key
    kept in the home folder; the audit key lets it check the audit log's chains."""
    from shipyard.api.ui import create_ui

    return create_ui(
        services,
        keys,
        session_key=ui_session_key(settings),
        secure_cookie=settings.ui_secure_cookie,
        audit_key=audit_key(settings),
        signin_failures=(settings.ui_signin_failures, settings.ui_signin_window_s),
    )
