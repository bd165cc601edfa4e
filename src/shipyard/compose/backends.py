"""URL scheme → backend, for every storage role; the one list of supported schemes
(``Settings`` validates its URLs against these tables)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from shipyard.config import Settings
from shipyard.errors import ConfigError, StoreError
from shipyard.guard.egress import redact_url
from shipyard.runtime.recorder import Recorder
from shipyard.runtime.services import Services
from shipyard.runtime.tenants import TenantPolicies
from shipyard.stores.blobs.regions import RegionalBlobs
from shipyard.stores.broker.base import Broker
from shipyard.stores.records.base import RecordStore
from shipyard.stores.secrets.base import SecretStore
from shipyard.stores.secrets.refs import SecretCache
from shipyard.stores.state.base import StateStore

RECORD_STORES: Mapping[str, str] = MappingProxyType(
    {
        "sqlite": "shipyard.stores.records.sql:SqlRecordStore",
        "postgresql": "shipyard.stores.records.sql:SqlRecordStore",
        "postgres": "shipyard.stores.records.sql:SqlRecordStore",
    }
)
"""URL scheme -> ``module:class`` of the record store (``SHIPYARD_DATABASE_URL``)."""

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


def url_scheme(url: str) -> str:
    """The scheme a backend is chosen by: ``postgresql+asyncpg://…`` gives ``postgresql``."""
    return url.split(":", 1)[0].split("+", 1)[0]


def open_backend(role: str, backends: Mapping[str, str], url: str, **options: Any) -> Any:
    """The backend of ``role`` for ``url``'s scheme, imported only when named."""
    scheme = url_scheme(url)
    target = backends.get(scheme)
    if target is None:
        raise ConfigError(
            f"unsupported {role} URL scheme {scheme!r}; use one of {sorted(backends)}"
        )
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls).from_url(url, **options)


def open_record_store(url: str, *, commit_delay_s: float | None = None) -> RecordStore:
    store: RecordStore = open_backend(
        "record store", RECORD_STORES, url, commit_delay_s=commit_delay_s
    )
    return store


def open_state_store(url: str) -> StateStore:
    store: StateStore = open_backend("state store", STATE_STORES, url)
    return store


def open_secret_store(url: str) -> SecretStore:
    store: SecretStore = open_backend("secret store", SECRET_STORES, url)
    return store


def open_broker(url: str) -> Broker:
    broker: Broker = open_backend("broker", BROKERS, url)
    return broker


def open_blob_stores(settings: Settings) -> RegionalBlobs:
    """One blob store per region: the default region (the URL's own endpoint) and each of
    ``SHIPYARD_BLOB_REGIONS`` (its endpoint)."""
    url = settings.resolved_blob_url
    regions: dict[str, str | None] = {settings.blob_region: None, **settings.blob_regions}
    stores = {
        region: open_backend("blob store", BLOB_STORES, url, region=region, endpoint=endpoint)
        for region, endpoint in regions.items()
    }
    return RegionalBlobs(stores, default_region=settings.blob_region)


async def check_stores(services: Services, settings: Settings) -> None:
    """Ping every configured store — records, state, broker, memory — in that order; the first
    that does not answer stops the start with a ``StoreError`` whose message is one line naming
    the store and its URL (without its password). The memory store's ping also opens it: one
    filled by another embedder stops the start with its ``ConfigError``."""
    urls = {
        "records": ("record store", settings.resolved_database_url),
        "state": ("state store", settings.resolved_state_url),
        "broker": ("broker", settings.resolved_broker_url),
        "memory": ("memory store", settings.resolved_memory_url),
    }
    for name, store in services.pinged():
        role, url = urls[name]
        try:
            await store.ping()
        except StoreError as exc:
            reason = " ".join(exc.message.split())
            raise StoreError(f"cannot reach the {role} at {redact_url(url)}: {reason}") from exc


@dataclass(frozen=True)
class Stores:
    """The stores every process opens, and what stands directly on them."""

    secrets: SecretCache
    records: RecordStore
    state: StateStore
    broker: Broker
    recorder: Recorder
    tenants: TenantPolicies


def open_stores(settings: Settings) -> Stores:
    """The secret, record and state stores and the broker of ``settings`` (not connected yet)."""
    secrets = SecretCache(open_secret_store(settings.secrets_url), cache_s=settings.secrets_cache_s)
    settings.home.mkdir(parents=True, exist_ok=True)
    records = open_record_store(
        settings.resolved_database_url, commit_delay_s=settings.record_commit_delay_s
    )
    return Stores(
        secrets=secrets,
        records=records,
        state=open_state_store(settings.resolved_state_url),
        broker=open_broker(settings.resolved_broker_url),
        recorder=Recorder(records, wait_s=settings.record_wait_s),
        tenants=TenantPolicies(records, cache_s=settings.tenant_cache_s),
    )
