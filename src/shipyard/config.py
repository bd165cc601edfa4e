"""Settings: ``SHIPYARD_*`` environment variables, then ``shipyard.toml``, then defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from shipyard.errors import ConfigError
from shipyard.guard.tool_secrets import SecretRule

ENV_PREFIX = "SHIPYARD_"


class Settings(BaseSettings):
    """Every knob of a Shipyard process; each field is ``SHIPYARD_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        toml_file=os.environ.get("SHIPYARD_CONFIG", "shipyard.toml"),
        extra="forbid",
        frozen=True,
    )

    home: Path = Field(Path(".shipyard"), description="Folder for embedded state (SQLite files).")
    database_url: str | None = Field(
        None,
        description="Record store URL: sqlite:///path or postgresql://user@host/db. "
        "Default: a SQLite file in the home folder.",
    )
    state_url: str | None = Field(
        None,
        description="State store URL (session history, leases): sqlite:///path or "
        "redis://host:6379/0. Default: a SQLite file in the home folder.",
    )
    broker_url: str | None = Field(
        None,
        description="Broker URL for tasks: sqlite:///path (embedded), "
        "amqp://user:pass@host:5672/ or sqs://<queue name prefix> (AWS_REGION, credentials and "
        "AWS_ENDPOINT_URL_SQS the AWS way). Default: a SQLite file in the home folder.",
    )
    blob_url: str | None = Field(
        None,
        description="Artifact (blob) store URL: file:///path (a folder per region) or "
        "s3://<bucket prefix>?account=<account id>[&region=..&endpoint=..&sse=AES256|aws:kms"
        "&kms_key_id=..]. Default: the blobs/ folder in the home folder.",
    )
    blob_region: str = Field(
        "default",
        min_length=1,
        description="The server's default region: tenants without a policy region keep their "
        "artifacts there.",
    )
    blob_regions: dict[str, str] = Field(
        default_factory=dict,
        description='Other regions and their S3 endpoints, as JSON: {"eu-west-1": '
        '"https://s3.eu-west-1.amazonaws.com"}. Each gets its own bucket '
        "(<prefix>-<account id>-<region>-an); a tenant reaches only its home region's.",
    )
    blob_presign_s: int = Field(
        0,
        ge=0,
        le=7 * 24 * 3600,
        description="> 0: GET /v1/artifacts/{id} redirects to a presigned URL valid this long "
        "(S3 only); 0: the server streams the bytes itself.",
    )
    max_artifact_bytes: int = Field(
        100 * 1024 * 1024,
        ge=1,
        description="Largest artifact, uploaded (POST /v1/artifacts, in place of "
        "SHIPYARD_MAX_BODY_BYTES) or put by a run (ctx.artifacts.put).",
    )
    max_input_artifact_bytes: int = Field(
        256 * 1024,
        ge=1,
        description="What the artifacts one run's input references (a user message with "
        "artifact_id) may hold together; a larger reference is refused (413).",
    )
    memory_url: str | None = Field(
        None,
        description="Long-term memory store URL: sqlite:///path (sqlite-vec, embedded) or "
        "postgresql://user@host:5432/db (a server with the pgvector extension). Default: "
        "memory.db in the home folder.",
    )
    embedder: str = Field(
        "wordllama:",
        min_length=1,
        description="The embedder of memories: wordllama: (offline, shipped weights; ?dim=64|128"
        "|256), openai:<model>?base_url=..&dimensions=.., or test:<dims> (deterministic, tests).",
    )
    task_max_attempts: int = Field(
        3,
        ge=1,
        le=100,
        description="Attempts of a task before it is dead and dead-lettered: every delivery "
        "that claims it counts, a redelivery after a worker died included.",
    )
    task_handover_sweep_s: float = Field(
        30.0,
        gt=0,
        description="Each server takes over, this often, the recorded tasks whose hand-over to "
        "the broker nobody has said it is doing for this long (their process died); also how "
        "long after a crash a restarted server takes over the tasks it had not handed over.",
    )
    task_retry_base_s: float = Field(
        1.0, gt=0, description="First retry delay of a failed task; doubles each attempt."
    )
    worker_heartbeat_s: float = Field(
        5.0,
        gt=0,
        le=300,
        description="How often a worker records that it is alive (GET /v1/workers); a worker "
        "not heard from for three intervals is shown stale.",
    )
    worker_retention_s: float = Field(
        86400.0,
        gt=0,
        description="How long a worker's row stays after its last heartbeat (stopped workers and "
        "workers that died without saying so); then the workers delete it.",
    )
    webhook_signing_key: SecretStr | None = Field(
        None,
        description="Key the tenants' webhook secrets derive from. Default: generated once "
        "into the home folder (set it explicitly when several machines run workers).",
    )
    webhook_attempts: int = Field(5, ge=1, le=50, description="Deliveries tried per webhook.")
    webhook_retry_base_s: float = Field(
        1.0, gt=0, description="First webhook retry delay; doubles each attempt (capped at 60 s)."
    )
    webhook_retention_s: float = Field(
        7 * 86400.0,
        gt=0,
        description="How long a delivered or failed webhook stays in the outbox after its last "
        "attempt; then the workers delete it (pending ones are never deleted).",
    )
    session_ttl_s: float = Field(
        3600.0, gt=0, le=30 * 86400, description="Default idle time before a session expires."
    )
    session_queue_s: float = Field(
        30.0, gt=0, description="Longest a turn waits for a running one (policy enqueue)."
    )
    retention_runs_days: int | None = Field(
        None, ge=1, description="Default days runs and their events are kept (unset: kept)."
    )
    retention_events_days: int | None = Field(
        None, ge=1, description="Default days run events are kept, their runs staying."
    )
    retention_tasks_days: int | None = Field(
        None, ge=1, description="Default days finished tasks (moves, webhooks) are kept."
    )
    retention_sessions_days: int | None = Field(
        None, ge=1, description="Default days a session (record and history) is kept."
    )
    retention_memories_days: int | None = Field(
        None, ge=1, description="Default days long-term memories are kept."
    )
    retention_artifacts_days: int | None = Field(
        None, ge=1, description="Default days artifacts (records and bytes) are kept."
    )
    retention_sweep_s: float = Field(
        600.0,
        ge=0,
        description="How often the retention sweeper deletes what tenants' retention says is "
        "past (one process of the deployment at a time); 0: this process never sweeps.",
    )
    model: str | None = Field(
        None,
        description="Default model for agents that name none, as provider:model. Default: "
        "openai:gpt-4.1-mini when OPENAI_API_KEY is set, else local:smollm2.",
    )
    admin_key: str | None = Field(
        None, description="Bootstrap admin key of the operator's tenant (for automation)."
    )
    operator_tenant: str = Field(
        "default",
        min_length=1,
        description="The operator's tenant: its admin keys act across tenants (the workers "
        "list, every tenant's metrics); another tenant's admin key acts only within its tenant.",
    )
    max_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Largest request body (and WebSocket message); a larger one gets 413 "
        "payload_too_large before it is read.",
    )
    limits: bool = Field(
        True,
        description="Enforce rate limits and the cap on runs in flight (the tenants' policies, "
        "else the SHIPYARD_LIMIT_* defaults). false: nothing is counted, no state-store trip.",
    )
    limit_requests_per_minute: int | None = Field(
        None, ge=1, description="Default API requests per minute of a tenant (all its keys)."
    )
    limit_key_requests_per_minute: int | None = Field(
        None, ge=1, description="Default API requests per minute of each key."
    )
    limit_tokens_per_minute: int | None = Field(
        None, ge=1, description="Default model tokens (prompt + completion) per minute of a tenant."
    )
    limit_tokens_per_day: int | None = Field(
        None, ge=1, description="Default model tokens per 24 hours of a tenant."
    )
    limit_key_tokens_per_minute: int | None = Field(
        None, ge=1, description="Default model tokens per minute of each key's runs (over HTTP)."
    )
    limit_concurrent_runs: int | None = Field(
        None, ge=1, description="Default cap on a tenant's runs in flight at once."
    )
    budgets: bool = Field(
        True,
        description="Enforce the tenants' spend budgets (policy section budgets; docs/costs.md). "
        "false: nothing is reserved or charged, no state-store trip.",
    )
    budget_reserve_usd: float = Field(
        0.10,
        ge=0,
        description="What a run reserves of each USD budget before it starts, when neither it "
        "(budgets.run_usd) nor its tenant (budgets.reserve_usd) says.",
    )
    budget_reserve_tokens: int = Field(
        20_000, ge=0, description="The same for token budgets (budgets.reserve_tokens)."
    )
    budget_policy: Literal["deny", "warn", "degrade"] = Field(
        "deny",
        description="What a run that would pass its reservation gets, unless its tenant's "
        "budgets.policy says: deny (402 budget_exceeded), warn, or degrade (cheaper models).",
    )
    budget_output_tokens: int = Field(
        1024,
        ge=1,
        description="The answer length a call's worst case assumes when it sets no max_tokens.",
    )
    prices_file: Path | None = Field(
        None,
        description="A JSON file of model prices (USD per 1M input/output tokens) extending or "
        "overriding the shipped table; see docs/costs.md.",
    )
    model_cache: bool = Field(
        False,
        description="Cache model calls (exact match, per tenant) in the state store; "
        "see docs/costs.md.",
    )
    model_cache_ttl_s: float = Field(
        3600.0, gt=0, description="How long a cached model answer is served."
    )
    semantic_cache: bool = Field(
        False,
        description="Answer single-turn model calls without tools from an earlier call that means "
        "the same (embedding similarity, per tenant, model and instructions); see docs/costs.md.",
    )
    semantic_cache_threshold: float = Field(
        0.9, gt=0, le=1, description="The cosine similarity from which two questions are the same."
    )
    semantic_cache_ttl_s: float = Field(
        3600.0, gt=0, description="How long an answer is served to similar questions."
    )
    semantic_cache_entries: int = Field(
        256, ge=1, description="How many recent questions of a bucket a call is compared with."
    )
    semantic_cache_embedder: str | None = Field(
        None, description="The semantic cache's embedder (default: SHIPYARD_EMBEDDER)."
    )
    request_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Longest a client may take to send a request's headers, and then its body; "
        "past it the connection is closed (the body's with 408 request_timeout).",
    )
    webhook_allow: str = Field(
        "",
        description="Webhook targets allowed despite the egress policy (which refuses private, "
        "loopback, link-local, unique-local, multicast, reserved and metadata addresses): "
        "comma-separated host names, IP addresses, CIDR ranges, each optionally with :port, "
        "e.g. 'hooks.internal,10.1.0.0/16,127.0.0.1:9000'.",
    )
    guards: str = Field(
        "",
        description='The server-wide guard policy, as JSON: {"rules": [{"detector": '
        '"pii", "surfaces": ["output"], "action": "redact"}], "hold_back": 64}; '
        "empty: no guards. An agent's own policy (Agent(guards=...)) replaces it "
        "(docs/guards.md).",
    )
    pseudonym_ttl_s: float = Field(
        86400.0,
        gt=0,
        le=30 * 86400,
        description="How long a run's pseudonyms (token -> original, for the guards' "
        "pseudonymize action) stay in the state store; a session's live as long as the session "
        "(SHIPYARD_SESSION_TTL_S, renewed on each turn) (docs/guards.md).",
    )
    pseudonym_key: SecretStr | None = Field(
        None,
        description="Key that seals the pseudonym mappings in the state store (AES-256-GCM): a "
        "secret://<path>#<key> reference, read at each use so a rotation needs no restart; "
        "one key of 32+ characters, or several separated by spaces, newest first (the first "
        "seals, all open). Default: generated once into the home folder (set it explicitly "
        "when several machines serve) (docs/guards.md).",
    )
    tool_allow: str = Field(
        "",
        description="Targets the tools' HTTP client (ctx.http) may reach despite the egress "
        "policy; the same format as SHIPYARD_WEBHOOK_ALLOW.",
    )
    egress_hosts: str = Field(
        "*",
        description="Hosts tools may reach through ctx.http, server-wide: comma-separated "
        "names, '*.example.com' patterns, IP addresses, or '*' (any). Agents' and tenants' "
        "egress rules narrow it; the address checks apply either way.",
    )
    egress_schemes: str = Field(
        "https,http", description="URL schemes tools and webhooks may use: https, http or both."
    )
    egress_ports: str = Field(
        "*", description="Ports tools and webhooks may reach: comma-separated, or '*' (any)."
    )
    egress_methods: str = Field(
        "*", description="HTTP methods tools may send: comma-separated, or '*' (any)."
    )
    egress_max_response_bytes: int = Field(
        10 * 1024 * 1024,
        ge=0,
        description="Largest answer body a tool's or webhook's request may read (on the wire); "
        "a longer one is cut off, one declared longer is refused unread.",
    )
    egress_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Longest one outbound request (each redirect hop) may take, from sending it "
        "to its last byte; then it is cut off.",
    )
    webhook_hosts: str = Field(
        "*",
        description="Hosts webhook_url may name: comma-separated names, '*.example.com' "
        "patterns, IP addresses, or '*' (any public host).",
    )
    env: Literal["development", "production"] = Field(
        "development",
        description="production refuses to start while a credential is a plain value (a "
        "password inside a URL, a provider key in the environment) instead of a secret:// "
        "reference, naming each; development prints a one-line warning instead.",
    )
    secrets_url: str = Field(
        "env://",
        description="Secret store that secret://<path>#<key> references read: env:// "
        "(variables SECRET_<PATH>__<KEY>), file:///run/secrets (a mounted folder), "
        "vault://host:8200/secret or vault+http://... (Vault or OpenBao KV v2).",
    )
    secrets_cache_s: float = Field(
        60.0,
        ge=0,
        description="How long a secret read for a model call or a tool's credential is kept; "
        "a rotation in the store is used within this time, without a restart.",
    )
    tool_secrets: list[SecretRule] = Field(
        default_factory=list,
        description="Credentials added to tools' ctx.http calls at the egress edge, as a JSON "
        'list: [{"name": "github", "secret": "secret://github#token", "hosts": '
        '["api.github.com"], "header": "Authorization", "template": "Bearer {secret}"}].',
    )
    audit: bool = Field(
        True,
        description="Write every API request, refusal and admin action to the hash-chained "
        "audit log (docs/security.md). Off: only API keys' last use is kept.",
    )
    audit_key: SecretStr | None = Field(
        None,
        description="Key the audit log's checkpoints are signed with (HMAC-SHA256); `shipyard "
        "audit verify` needs the same one. Default: generated once into the home folder (set it "
        "explicitly when several machines write to one record store).",
    )
    audit_checkpoint_s: float = Field(
        1.0,
        gt=0,
        le=3600,
        description="Each process signs its audit chain's head at least this often while it "
        "writes; rows after the last signature can be changed unnoticed.",
    )
    audit_flush_s: float = Field(
        0.05,
        ge=0,
        le=10,
        description="Audit rows gather this long before a batch is written (one statement, in "
        "the record store's group commit); a crash loses at most this much.",
    )
    ui: bool = Field(True, description="Serve the dashboard at /ui (docs/dashboard.md).")
    ui_session_key: SecretStr | None = Field(
        None,
        description="Key that signs the dashboard's session cookies (may be a secret:// "
        "reference). Default: generated once into the home folder (set it explicitly when "
        "several servers sit behind one address).",
    )
    ui_secure_cookie: bool = Field(
        False, description="Send the dashboard's session cookie over HTTPS only (Secure)."
    )
    ui_signin_failures: int = Field(
        10,
        ge=1,
        description="Failed dashboard sign-ins one client address may make per "
        "SHIPYARD_UI_SIGNIN_WINDOW_S before the sign-in page answers 429.",
    )
    ui_signin_window_s: float = Field(
        300.0, gt=0, description="The window of SHIPYARD_UI_SIGNIN_FAILURES, in seconds."
    )
    host: str = Field("127.0.0.1", description="Address the server listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port the server listens on.")
    app: str | None = Field(None, description="The app to serve, as module:attribute.")
    run_timeout_s: float = Field(
        120.0, gt=0, description="Wall-clock limit of one run; past it the caller gets 504."
    )
    tool_timeout_s: float = Field(30.0, gt=0, description="Default limit of one tool call.")
    migrate_on_start: bool = Field(
        True, description="Apply database migrations when the server starts."
    )
    record_wait_s: float = Field(
        10.0,
        gt=0,
        description="How long a finished run waits for its record to be durable before the "
        "caller gets 503 (the record is still written once the store recovers).",
    )
    record_commit_delay_s: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Group commit of the record store: before a transaction starts, its "
        "writes wait for more while the process is busy with other work, at most this long "
        "(an idle process does not wait). Less CPU per write under load. Unset: 0.002 on a "
        "SQLite file, 0 on PostgreSQL.",
    )
    key_cache_s: float = Field(
        5.0,
        ge=0,
        description="How long a verified API key is trusted before it is looked up again.",
    )
    tenant_cache_s: float = Field(
        5.0,
        ge=0,
        description="How long a process trusts a tenant policy it read before reading it "
        "again (a change made elsewhere is seen within this; 0: read every time).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info",
        description="Process log level. At debug, run event records include message bodies "
        "(inputs, outputs, tool arguments), after the redaction hook.",
    )
    log_format: Literal["console", "json"] = Field(
        "console", description="Readable lines for development, or one JSON object per line."
    )
    log_events: bool = Field(
        True, description="One log record per run event (model call, tool call, outcome...)."
    )
    metrics: bool = Field(True, description="Prometheus metrics at GET /metrics.")
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Also serve metrics on this port without auth (workers: their only "
        "metrics endpoint).",
    )
    tracing: bool = Field(
        True,
        description="OpenTelemetry spans per run, model call and tool call, exported over OTLP "
        "when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set (standard OTEL_* variables). "
        "GET /v1/traces/{trace_id} reads traces from the stored run events either way.",
    )
    access_log: bool = Field(False, description="Log every HTTP request (uvicorn's access log).")

    @field_validator("database_url", "state_url", "broker_url")
    @classmethod
    def _known_scheme(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or _is_reference(value):
            return value  # checked once resolved
        # The composition root's factories are the one list of schemes; imported here, not at
        # the top, because shipyard.app imports this module.
        from shipyard.compose.backends import BROKERS, RECORD_STORES, STATE_STORES, url_scheme

        backends = {
            "database_url": RECORD_STORES,
            "state_url": STATE_STORES,
            "broker_url": BROKERS,
        }[str(info.field_name)]
        scheme = url_scheme(value)
        if scheme not in backends:
            supported = ", ".join(f"{s}://" for s in sorted(backends))
            raise ValueError(f"unsupported scheme {scheme!r}; use one of {supported}")
        return value

    @field_validator("secrets_url")
    @classmethod
    def _known_secret_store(cls, value: str) -> str:
        from shipyard.compose.backends import SECRET_STORES, url_scheme

        if url_scheme(value) not in SECRET_STORES:
            supported = ", ".join(f"{s}://" for s in sorted(SECRET_STORES))
            raise ValueError(f"unsupported scheme {url_scheme(value)!r}; use one of {supported}")
        return value

    @field_validator("guards")
    @classmethod
    def _guard_policy(cls, value: str) -> str:
        from shipyard.guard.policy import GuardPolicy

        try:
            GuardPolicy.from_setting(value)
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("webhook_allow", "tool_allow")
    @classmethod
    def _allow_list(cls, value: str) -> str:
        from shipyard.guard.egress import parse_allow

        parse_allow(value)  # raises ValueError naming the bad entry
        return value

    @field_validator(
        "egress_hosts", "egress_schemes", "egress_ports", "egress_methods", "webhook_hosts"
    )
    @classmethod
    def _egress_rule(cls, value: str, info: ValidationInfo) -> str:
        from shipyard.guard.rules import EgressRules

        rule = str(info.field_name).rpartition("_")[2]  # hosts, schemes, ports, methods
        try:
            EgressRules.from_text(**{rule: value})  # type: ignore[arg-type]
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str | None) -> str | None:
        if value is not None:
            from shipyard.models.registry import parse_reference

            try:
                parse_reference(value)
            except ConfigError as exc:
                raise ValueError(exc.message) from None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'shipyard.db'}"

    @property
    def resolved_state_url(self) -> str:
        return self.state_url or f"sqlite:///{self.home / 'state.db'}"

    @property
    def resolved_blob_url(self) -> str:
        return self.blob_url or f"file://{(self.home / 'blobs').absolute()}"

    @property
    def resolved_memory_url(self) -> str:
        return self.memory_url or f"sqlite:///{self.home / 'memory.db'}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqlite:///{self.home / 'broker.db'}"

    @property
    def resolved_model(self) -> str:
        if self.model:
            return self.model
        if os.environ.get("OPENAI_API_KEY"):
            return "openai:gpt-4.1-mini"
        return "local:smollm2"


def _is_reference(value: str) -> bool:
    from shipyard.stores.secrets.refs import parse_ref

    return parse_ref(value) is not None


def load_settings(**overrides: object) -> Settings:
    """Build the settings, turning a validation error into a ``ConfigError`` that names the knob."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            problems.append(f"{ENV_PREFIX}{field.upper()}: {err['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from exc
