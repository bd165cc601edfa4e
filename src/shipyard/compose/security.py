"""The security services: the audit log, egress for tools and webhooks, tools' credentials,
rate limits and API keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import httpx

from shipyard.agents.agent import Agent, AgentLike
from shipyard.compose.keys import audit_key, webhook_signing_key
from shipyard.config import Settings
from shipyard.errors import ConfigError
from shipyard.guard.egress import EgressPolicy
from shipyard.guard.rules import EgressRules
from shipyard.guard.secret_scrub import SecretScrubber
from shipyard.guard.tool_secrets import SecretTransport, check_declared
from shipyard.runtime.audit import AuditLog
from shipyard.runtime.egress import ToolEgress
from shipyard.runtime.limits import SLOT_MARGIN_S, Effective, Limiter
from shipyard.runtime.tenants import TenantPolicies
from shipyard.runtime.webhooks import WebhookSender
from shipyard.stores.records.base import RecordStore
from shipyard.stores.secrets.refs import SecretCache
from shipyard.stores.state.base import StateStore
from shipyard.telemetry.events import EventProcessor, ProcessorFactory
from shipyard.telemetry.observability import Observability

if TYPE_CHECKING:
    from shipyard.api.keys import KeyService


def check_tool_secrets(agents: Mapping[str, AgentLike], settings: Settings) -> None:
    """Every secret a tool declares has a rule (``ConfigError`` naming those without)."""
    declared = {
        f"{agent.name}.{spec.name}": tool.secrets
        for agent in agents.values()
        if isinstance(agent, Agent)
        for spec in agent.tool_specs
        if (tool := agent.get_tool(spec.name)) is not None and tool.secrets
    }
    try:
        check_declared(declared, settings.tool_secrets)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


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


def build_webhooks(settings: Settings, observability: Observability) -> WebhookSender:
    """The webhook sender: signed, retried, held to ``SHIPYARD_WEBHOOK_ALLOW`` and its rules."""
    return WebhookSender(
        webhook_signing_key(settings),
        attempts=settings.webhook_attempts,
        base_s=settings.webhook_retry_base_s,
        policy=EgressPolicy.from_setting(settings.webhook_allow, setting="SHIPYARD_WEBHOOK_ALLOW"),
        rules=webhook_rules(settings),
        report=observability.metrics.webhook_egress if observability.metrics else None,
    )


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


def build_keys(records: RecordStore, settings: Settings) -> KeyService:
    from shipyard.api.keys import KeyService

    return KeyService(
        records, cache_s=settings.key_cache_s, operator_tenant=settings.operator_tenant
    )
