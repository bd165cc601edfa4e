"""The composition root: the only module that knows concrete backends and wires them from URLs."""

from __future__ import annotations

import importlib
import secrets
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import httpx

from shipyard.agents.agent import Agent, AgentLike
from shipyard.config import Settings, load_settings
from shipyard.errors import ConfigError, StoreError
from shipyard.guard.egress import EgressPolicy, redact_url
from shipyard.guard.policy import GuardPolicy
from shipyard.guard.rules import EgressRules
from shipyard.guard.secret_scrub import SecretScrubber
from shipyard.guard.tool_secrets import SecretTransport, check_declared
from shipyard.models.cache import model_cache
from shipyard.models.prices import load_prices, price_of, register_price
from shipyard.models.resolver import ModelResolver, ModelWrapper
from shipyard.models.router import Router, RouteScopeHook, check_router_refs
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
from shipyard.runtime.lifecycle import (
    ArtifactLifecycle,
    Eraser,
    RecordErasure,
    RecordPruning,
    SessionLifecycle,
)
from shipyard.runtime.limits import SLOT_MARGIN_S, Effective, Limiter
from shipyard.runtime.memory import MemoryHook, MemoryService
from shipyard.runtime.model_cache import CacheHook
from shipyard.runtime.pseudonym_keys import PseudonymKeys
from shipyard.runtime.pseudonyms import PseudonymVault
from shipyard.runtime.recorder import Recorder
from shipyard.runtime.retention import RetentionKind, TenantRetention, session_ttl_cap
from shipyard.runtime.services import Services
from shipyard.runtime.sessions import SessionService
from shipyard.runtime.tasks import TaskService
from shipyard.runtime.tenants import TenantPolicies
from shipyard.runtime.webhooks import WebhookSender
from shipyard.stores.blobs.regions import RegionalBlobs
from shipyard.stores.broker.base import Broker
from shipyard.stores.memory.base import MemoryStore
from shipyard.stores.records.base import RecordStore
from shipyard.stores.secrets.base import SecretStore
from shipyard.stores.secrets.refs import SecretCache
from shipyard.stores.state.base import StateStore
from shipyard.telemetry.events import EventProcessor, ProcessorFactory
from shipyard.telemetry.observability import Observability

if TYPE_CHECKING:
    from fastapi import FastAPI

    from shipyard.api.keys import KeyService

DEFAULT_APP = "examples.assistant:app"

RECORD_STORES: Mapping[str, str] = MappingProxyType(
    {
        "sqlite": "shipyard.stores.records.sql:SqlRecordStore",
        "postgresql": "shipyard.stores.records.sql:SqlRecordStore",
        "postgres": "shipyard.stores.records.sql:SqlRecordStore",
    }
)
"""URL scheme -> ``module:class`` of the record store; the one list of supported schemes
(``Settings`` validates ``SHIPYARD_DATABASE_URL`` against it)."""

STATE_STORES: Mapping[str, str] = MappingProxyType(
    {
        "sqlite": "shipyard.stores.state.sqlite:SqliteStateStore",
        "redis": "shipyard.stores.state.redis:RedisStateStore",
        "rediss": "shipyard.stores.state.redis:RedisStateStore",
        "unix": "shipyard.stores.state.redis:RedisStateStore",
    }
)
"""URL scheme -> ``module:class`` of the state store (``SHIPYARD_STATE_URL``)."""

BROKERS: Mapping[str, str] = MappingProxyType(
    {
        "sqlite": "shipyard.stores.broker.embedded:EmbeddedBroker",
        "amqp": "shipyard.stores.broker.rabbitmq:RabbitBroker",
        "amqps": "shipyard.stores.broker.rabbitmq:RabbitBroker",
        "sqs": "shipyard.stores.broker.sqs:SqsBroker",  # region, credentials: the AWS way
    }
)
"""URL scheme -> ``module:class`` of the task broker (``SHIPYARD_BROKER_URL``)."""

SECRET_STORES: Mapping[str, str] = MappingProxyType(
    {
        "env": "shipyard.stores.secrets.env:EnvSecretStore",
        "file": "shipyard.stores.secrets.file:FileSecretStore",
        "vault": "shipyard.stores.secrets.vault:VaultSecretStore",  # vault+http:// too
    }
)
"""URL scheme -> ``module:class`` of the secret store (``SHIPYARD_SECRETS_URL``)."""

BLOB_STORES: Mapping[str, str] = MappingProxyType(
    {
        "file": "shipyard.stores.blobs.local:LocalBlobStore",
        "s3": "shipyard.stores.blobs.s3:S3BlobStore",
    }
)
"""URL scheme -> ``module:class`` of the artifact (blob) store (``SHIPYARD_BLOB_URL``)."""

MEMORY_STORES: Mapping[str, str] = MappingProxyType(
    {
        "sqlite": "shipyard.stores.memory.sqlite:SqliteMemoryStore",
        "postgresql": "shipyard.stores.memory.postgres:PostgresMemoryStore",
        "postgres": "shipyard.stores.memory.postgres:PostgresMemoryStore",
    }
)
"""URL scheme -> ``module:class`` of the long-term memory store (``SHIPYARD_MEMORY_URL``)."""


class App:
    """The agents a Shipyard server serves: ``shipyard.App(agents=[...])``."""

    def __init__(
        self,
        agents: Sequence[AgentLike] = (),
        *,
        title: str = "Shipyard",
        model_wrappers: Sequence[ModelWrapper] = (),
        event_processors: Sequence[ProcessorFactory] = (),
        run_hooks: Sequence[RunHook] = (),
        routers: Sequence[Router] = (),
    ) -> None:
        """``model_wrappers``: composed around every model every run calls, the first
        innermost (see ``shipyard.models.wrapper``). ``event_processors``: make each run's
        processors, which every event passes through, in order, before any sink (see
        ``shipyard.telemetry.events.EventProcessor``). ``run_hooks``: run before and after
        every agent run (see ``shipyard.runtime.hooks``). ``routers``: what ``router:<name>``
        model references name (see ``shipyard.models.router``, docs/routing.md)."""
        self.routers = tuple(routers)
        self.run_hooks = tuple(run_hooks)
        self.title = title
        self.model_wrappers = tuple(model_wrappers)
        self.event_processors = tuple(event_processors)
        self.agents: dict[str, AgentLike] = {}
        for agent in agents:
            if not isinstance(agent, AgentLike):
                raise ConfigError(f"{agent!r} is not an agent (an Agent, or made with @agent)")
            if agent.name in self.agents:
                raise ConfigError(f"two agents are named {agent.name!r}")
            self.agents[agent.name] = agent
        check_router_refs(self.agents.values(), self.routers)

    def asgi(self, settings: Settings | None = None, *, prepare: bool = True) -> FastAPI:
        """The ASGI application serving these agents, wired from ``settings``.

        With ``prepare`` the app migrates the store and makes sure an admin key exists when it
        starts; ``shipyard serve`` does that itself first, to fail with a clean message.
        """
        from shipyard.api.app import create_app

        # settings given were prepared by whoever built them (the CLI): resolved, not checked
        if settings is None:
            settings = prepare_settings(load_settings())
        else:
            settings = prepare_settings(settings, check=False)
        services = build_services(self, settings)
        keys = build_keys(services.records, settings)

        async def on_startup() -> None:
            await check_stores(services, settings)
            await prepare_stores(services.records, keys, settings)

        return create_app(
            services,
            keys,
            on_startup=on_startup if prepare else None,
            title=self.title,
            max_body_bytes=settings.max_body_bytes,
            ui=build_ui(services, keys, settings) if settings.ui else None,
        )


async def prepare_stores(records: RecordStore, keys: KeyService, settings: Settings) -> None:
    """Migrate (if configured) and make sure an admin key exists, printing a new one once."""
    if settings.migrate_on_start:
        await records.migrate()
    new_key = await keys.bootstrap(settings.admin_key)
    if new_key:
        announce_admin_key(new_key, settings.operator_tenant)


async def check_stores(services: Services, settings: Settings) -> None:
    """Ping every configured store — records, state, broker — in that order; the first that
    does not answer stops the start with a ``StoreError`` whose message is one line naming the
    store and its URL (without its password)."""
    stores = (
        ("record store", services.records, settings.resolved_database_url),
        ("state store", services.state, settings.resolved_state_url),
        ("broker", services.broker, settings.resolved_broker_url),
    )
    for role, store, url in stores:
        try:
            await store.ping()
        except StoreError as exc:
            reason = " ".join(exc.message.split())
            raise StoreError(f"cannot reach the {role} at {redact_url(url)}: {reason}") from exc


def url_scheme(url: str) -> str:
    """The scheme a backend is chosen by: ``postgresql+asyncpg://…`` gives ``postgresql``."""
    return url.split(":", 1)[0].split("+", 1)[0]


def open_record_store(url: str, *, commit_delay_s: float | None = None) -> RecordStore:
    store: RecordStore = _open("record store", RECORD_STORES, url, commit_delay_s=commit_delay_s)
    return store


def open_state_store(url: str) -> StateStore:
    store: StateStore = _open("state store", STATE_STORES, url)
    return store


def open_secret_store(url: str) -> SecretStore:
    store: SecretStore = _open("secret store", SECRET_STORES, url)
    return store


def prepare_settings(settings: Settings, *, check: bool = True) -> Settings:
    """Refuse (production) or warn of plain credentials, then read the settings' ``secret://``
    references from the secret store (see ``shipyard.secret_settings``)."""
    from shipyard.secret_settings import prepare_settings as prepare

    return prepare(settings, open_secret_store, check=check)


def check_tool_secrets(app: App, settings: Settings) -> None:
    """Every secret a tool declares has a rule (``ConfigError`` naming those without)."""
    declared = {
        f"{agent.name}.{spec.name}": tool.secrets
        for agent in app.agents.values()
        if isinstance(agent, Agent)
        for spec in agent.tool_specs
        if (tool := agent.get_tool(spec.name)) is not None and tool.secrets
    }
    try:
        check_declared(declared, settings.tool_secrets)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def open_blob_stores(settings: Settings) -> RegionalBlobs:
    """One blob store per region: the default region (the URL's own endpoint) and each of
    ``SHIPYARD_BLOB_REGIONS`` (its endpoint)."""
    url = settings.resolved_blob_url
    regions: dict[str, str | None] = {settings.blob_region: None, **settings.blob_regions}
    stores = {
        region: _open("blob store", BLOB_STORES, url, region=region, endpoint=endpoint)
        for region, endpoint in regions.items()
    }
    return RegionalBlobs(stores, default_region=settings.blob_region)


def build_artifacts(
    settings: Settings, records: RecordStore, tenants: TenantPolicies
) -> ArtifactService:
    return ArtifactService(
        records,
        open_blob_stores(settings),
        tenants,
        max_bytes=settings.max_artifact_bytes,
        presign_s=settings.blob_presign_s,
    )


def retention_defaults(settings: Settings) -> dict[RetentionKind, int | None]:
    """The server's retention periods (``SHIPYARD_RETENTION_*``), for tenants that set none."""
    return {
        "runs": settings.retention_runs_days,
        "events": settings.retention_events_days,
        "tasks": settings.retention_tasks_days,
        "sessions": settings.retention_sessions_days,
        "memories": settings.retention_memories_days,
        "artifacts": settings.retention_artifacts_days,
    }


def build_lifecycle(
    settings: Settings,
    records: RecordStore,
    state: StateStore,
    tenants: TenantPolicies,
    artifacts: ArtifactService,
    audit: AuditLog,
    recorder: Recorder,
    memory: MemoryStore,
) -> tuple[TenantRetention | None, Eraser]:
    """The retention sweeper (``SHIPYARD_RETENTION_*``; none with ``SHIPYARD_RETENTION_SWEEP_S``
    0) and the subject eraser, over every store. A store with ``prune`` and ``erase_subject``
    (``stores.lifecycle``) joins with one line each: ``retention.add(kind, store)``, and
    ``eraser.add(name, store)`` before the records (which the others read)."""
    known = records.lifecycle
    files = ArtifactLifecycle(known, records, artifacts.blobs)
    sessions = SessionLifecycle(known, state)
    eraser = Eraser(audit, flush=recorder.durable)
    eraser.add("artifacts", files)
    eraser.add("session_history", sessions)
    eraser.add("memories", memory)
    eraser.add("records", RecordErasure(known))  # last: the others read its rows
    if settings.retention_sweep_s <= 0:
        return None, eraser
    defaults = retention_defaults(settings)
    retention = TenantRetention(
        tenants, known, defaults, every_s=settings.retention_sweep_s, state=state
    )
    retention.add("runs", RecordPruning(known, known.prune_runs))
    retention.add("events", RecordPruning(known, known.prune_events))
    retention.add("tasks", RecordPruning(known, known.prune_tasks))
    retention.add("webhooks", RecordPruning(known, known.prune_webhooks_of))
    retention.add("sessions", sessions)
    retention.add("artifacts", files)
    retention.add("memories", memory)
    return retention, eraser


def memory_hooks(
    memory: MemoryService, agents: Mapping[str, AgentLike], records: RecordStore
) -> list[RunHook]:
    """The memory hook, when an agent has memory: every hook is a step of every run."""
    uses = any(isinstance(a, Agent) and a.memory is not None for a in agents.values())
    return [MemoryHook(memory, agents, records)] if uses else []


def build_memory(settings: Settings) -> MemoryService:
    """Long-term memory: the store of ``SHIPYARD_MEMORY_URL`` for the vectors of
    ``SHIPYARD_EMBEDDER`` (both open lazily: nothing connects or loads weights until used)."""
    from shipyard.models.embedding import create_embedder

    embedder = create_embedder(settings.embedder)
    store: MemoryStore = _open(
        "memory store",
        MEMORY_STORES,
        settings.resolved_memory_url,
        embedder=embedder.name,
        dimensions=embedder.dimensions,
    )
    return MemoryService(store, embedder)


def open_broker(url: str) -> Broker:
    broker: Broker = _open("broker", BROKERS, url)
    return broker


def _open(role: str, backends: Mapping[str, str], url: str, **options: Any) -> Any:
    scheme = url_scheme(url)
    target = backends.get(scheme)
    if target is None:
        raise ConfigError(
            f"unsupported {role} URL scheme {scheme!r}; use one of {sorted(backends)}"
        )
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls).from_url(url, **options)


def build_services(app: App, settings: Settings) -> Services:
    settings = prepare_settings(settings, check=False)  # a no-op once prepared
    check_tool_secrets(app, settings)
    secrets = SecretCache(open_secret_store(settings.secrets_url), cache_s=settings.secrets_cache_s)
    settings.home.mkdir(parents=True, exist_ok=True)
    records = open_record_store(
        settings.resolved_database_url, commit_delay_s=settings.record_commit_delay_s
    )
    state = open_state_store(settings.resolved_state_url)
    broker = open_broker(settings.resolved_broker_url)
    recorder = Recorder(records, wait_s=settings.record_wait_s)
    observability = build_observability(settings)
    limits = RunLimits(
        default_model=settings.resolved_model,
        run_timeout_s=settings.run_timeout_s,
        tool_timeout_s=settings.tool_timeout_s,
    )
    if settings.prices_file is not None:
        load_prices(settings.prices_file)
    price_routers(app.routers)
    route_hooks = [RouteScopeHook()] if app.routers else []  # routers see the run's tenant
    tenants = TenantPolicies(records, cache_s=settings.tenant_cache_s)
    governor = build_governor(settings, state, tenants)
    cache = CacheHook(app.agents) if settings.model_cache else None
    wrappers: list[ModelWrapper] = [BudgetedModel] if governor else []
    if cache is not None:  # outside the budget's wrapper: a hit spends nothing
        wrappers.append(model_cache(state, settings.model_cache_ttl_s))
    models = ModelResolver([*wrappers, *app.model_wrappers], secrets=secrets, routers=app.routers)
    egress = build_egress(settings, tenants, secrets)
    limiter = build_limiter(settings, state, tenants)
    audit = build_audit(records, settings)
    memory = build_memory(settings)
    invoker = Invoker(
        app.agents,
        recorder,
        limits,
        observers=[*observability.sinks, audit_blocks(audit)],
        models=models,
        processors=(*scrub_secrets(settings, secrets), *app.event_processors),
        hooks=[
            *([limiter.hook] if limiter else []),
            *route_hooks,
            *([governor.hook] if governor else []),
            *([cache] if cache else []),
            *memory_hooks(memory, app.agents, records),
            *app.run_hooks,
        ],
        egress=egress,
        guards=GuardPolicy.from_setting(settings.guards),
        tenants=tenants,
    )
    for served in app.agents.values():  # a policy naming a missing detector fails at start
        invoker.guard_for(served)
    control = Control(state)  # one subscription per process, for every run's stop word
    sessions = SessionService(
        state,
        records,
        invoker,
        default_ttl_s=settings.session_ttl_s,
        queue_s=settings.session_queue_s,
        control=control,
        max_ttl_s=session_ttl_cap(tenants, retention_defaults(settings)),
    )
    webhooks = WebhookSender(
        webhook_signing_key(settings),
        attempts=settings.webhook_attempts,
        base_s=settings.webhook_retry_base_s,
        policy=EgressPolicy.from_setting(settings.webhook_allow, setting="SHIPYARD_WEBHOOK_ALLOW"),
        rules=webhook_rules(settings),
        report=observability.metrics.webhook_egress if observability.metrics else None,
    )
    tasks = TaskService(
        records, broker, invoker, control, handover_sweep_s=settings.task_handover_sweep_s
    )
    invoker.calls = Delegation(invoker, tasks)
    artifacts = build_artifacts(settings, records, tenants)
    invoker.artifacts = artifacts
    invoker.pseudonyms = PseudonymVault(
        state,
        PseudonymKeys(pseudonym_key(settings), secrets),
        ttl_s=settings.pseudonym_ttl_s,
        session_ttl_s=settings.session_ttl_s,
    )
    retention, eraser = build_lifecycle(
        settings, records, state, tenants, artifacts, audit, recorder, memory.store
    )
    return Services(
        agents=app.agents,
        records=records,
        recorder=recorder,
        invoker=invoker,
        state=state,
        sessions=sessions,
        broker=broker,
        tasks=tasks,
        webhooks=webhooks,
        control=control,
        tenants=tenants,
        observability=observability,
        models=models,
        egress=egress,
        secrets=secrets,
        limiter=limiter,
        audit=audit,
        artifacts=artifacts,
        retention=retention,
        eraser=eraser,
        memory=memory,
        governor=governor,
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


def build_audit(records: RecordStore, settings: Settings) -> AuditLog:
    """The process's audit log (one hash chain of its own), signed with the audit key."""
    return AuditLog(
        records,
        key=audit_key(settings),
        enabled=settings.audit,
        flush_s=settings.audit_flush_s,
        checkpoint_s=settings.audit_checkpoint_s,
    )


def egress_rules(settings: Settings) -> EgressRules:
    """The server's egress rules for tools (``SHIPYARD_EGRESS_*``)."""
    return EgressRules.from_text(
        hosts=settings.egress_hosts,
        schemes=settings.egress_schemes,
        ports=settings.egress_ports,
        methods=settings.egress_methods,
        max_response_bytes=settings.egress_max_response_bytes,
        timeout_s=settings.egress_timeout_s,
    )


def webhook_rules(settings: Settings) -> EgressRules:
    """The webhook rules: the server's schemes, ports and caps, ``SHIPYARD_WEBHOOK_HOSTS``."""
    return EgressRules.from_text(
        hosts=settings.webhook_hosts,
        schemes=settings.egress_schemes,
        ports=settings.egress_ports,
        max_response_bytes=settings.egress_max_response_bytes,
        timeout_s=settings.egress_timeout_s,
    )


def build_egress(settings: Settings, tenants: TenantPolicies, secrets: SecretCache) -> ToolEgress:
    """The tools' egress: ``SHIPYARD_TOOL_ALLOW``'s exceptions, the server's rules, each
    tenant policy's ``egress.allow``, and at its edge the operator's credential rules
    (``SHIPYARD_TOOL_SECRETS``), added to a request only once the policy let it through."""

    async def tenant_hosts(tenant_id: str) -> list[str] | None:
        return (await tenants.policy(tenant_id)).egress.allow

    policy = EgressPolicy.from_setting(settings.tool_allow, setting="SHIPYARD_TOOL_ALLOW")
    rules = settings.tool_secrets

    def edge(pool: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        return SecretTransport(pool, rules, secrets) if rules else pool

    return ToolEgress(policy, egress_rules(settings), tenant_hosts=tenant_hosts, edge=edge)


def scrub_secrets(settings: Settings, secrets: SecretCache) -> list[ProcessorFactory]:
    """With tool credential rules (a service may echo one into a tool's result), a first event
    processor that blanks every secret value read; without, none (the plain event path)."""
    if not settings.tool_secrets:
        return []
    scrubber: EventProcessor = SecretScrubber(secrets)
    return [lambda: scrubber]


def build_limiter(settings: Settings, state: StateStore, tenants: TenantPolicies) -> Limiter | None:
    """The rate limits and the cap on runs in flight (``SHIPYARD_LIMITS``; off: None)."""
    if not settings.limits:
        return None
    defaults = Effective(
        requests_per_minute=settings.limit_requests_per_minute,
        key_requests_per_minute=settings.limit_key_requests_per_minute,
        tokens_per_minute=settings.limit_tokens_per_minute,
        tokens_per_day=settings.limit_tokens_per_day,
        key_tokens_per_minute=settings.limit_key_tokens_per_minute,
        max_concurrent_runs=settings.limit_concurrent_runs,
    )
    slot_ttl_s = settings.run_timeout_s + SLOT_MARGIN_S  # a run ends by then, or its slot frees
    return Limiter(state, tenants, defaults, slot_ttl_s=slot_ttl_s)


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


def webhook_signing_key(settings: Settings) -> str:
    """The configured key, or one generated once into the home folder (readable by owner)."""
    if settings.webhook_signing_key is not None:
        return settings.webhook_signing_key.get_secret_value()
    return _home_key(settings, "webhook.key")


def pseudonym_key(settings: Settings) -> str:
    """The configured key (or reference), or one generated once into the home folder."""
    if settings.pseudonym_key is not None:
        return settings.pseudonym_key.get_secret_value()
    return _home_key(settings, "pseudonym.key")


def audit_key(settings: Settings) -> bytes:
    """``SHIPYARD_AUDIT_KEY``, or one generated once into the home folder (readable by owner)."""
    if settings.audit_key is not None:
        return settings.audit_key.get_secret_value().encode()
    return _home_key(settings, "audit.key").encode()


def _home_key(settings: Settings, name: str) -> str:
    settings.home.mkdir(parents=True, exist_ok=True)
    path = settings.home / name
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()


def build_ui(services: Services, keys: KeyService, settings: Settings) -> FastAPI:
    """The dashboard (``api.ui``): its cookies signed with ``SHIPYARD_UI_SESSION_KEY`` or a key
    kept in the home folder; the audit key lets it check the audit log's chains."""
    from shipyard.api.ui import create_ui

    key = settings.ui_session_key
    return create_ui(
        services,
        keys,
        session_key=key.get_secret_value() if key else _home_key(settings, "ui-session.key"),
        secure_cookie=settings.ui_secure_cookie,
        audit_key=audit_key(settings),
    )


def build_keys(records: RecordStore, settings: Settings) -> KeyService:
    from shipyard.api.keys import KeyService

    return KeyService(
        records, cache_s=settings.key_cache_s, operator_tenant=settings.operator_tenant
    )


def announce_admin_key(secret: str, tenant: str = "default") -> None:
    line = "=" * 72
    print(
        f"\n{line}\nCreated the first admin key (tenant '{tenant}', the operator's). "
        "It is shown only once:\n\n"
        f"    {secret}\n\nUse it as 'Authorization: Bearer <key>'; create more with "
        f"'shipyard keys create'.\n{line}\n",
        file=sys.stderr,
        flush=True,
    )


def load_app(reference: str | None) -> App:
    """Import ``module:attribute`` (the current folder is importable, as with uvicorn)."""
    reference = reference or DEFAULT_APP
    module_name, _, attr = reference.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--app {reference!r} must look like module:attribute")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r} for --app {reference}: {exc}") from exc
    found = getattr(module, attr, None)
    if callable(found) and not isinstance(found, App):
        found = found()
    if not isinstance(found, App):
        raise ConfigError(f"{reference} is not a shipyard.App (got {type(found).__name__})")
    return found
