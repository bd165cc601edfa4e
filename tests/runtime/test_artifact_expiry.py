"""Artifacts on S3 (SeaweedFS) expire by bucket lifecycle rules too: a sweep sets one rule per
tenant with an artifact period — its key folder, its days (its policy's, else the server's) —
updates it when the retention changes, drops it when the period is unset, and keeps a rule of
the bucket's that is not Shipyard's."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shipyard import Agent
from shipyard.app import App, build_services
from shipyard.config import load_settings
from shipyard.runtime.artifacts import tenant_prefix
from shipyard.runtime.services import Services
from shipyard.stores.blobs.s3 import S3BlobStore
from shipyard.stores.blobs.s3_lifecycle import current_rules
from shipyard.stores.records.policy import Retention, TenantPolicy
from tests.stores.blobs.conftest import S3_ENDPOINTS, S3_KEYS, s3_store

pytestmark = pytest.mark.s3

OPERATORS_RULE = {
    "ID": "archive-exports",
    "Filter": {"Prefix": "exports/"},
    "Status": "Enabled",
    "Expiration": {"Days": 365},
}


@pytest.fixture
async def services(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Services]:
    """Services on a fresh bucket; the server's default artifact period is 90 days (a test
    names another with indirect parametrization: ``None`` for none)."""
    await (await s3_store("eu-a")).close()  # skips (or fails) when SeaweedFS is down
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEYS["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_KEYS["secret_access_key"])
    settings = load_settings(
        home=tmp_path,
        log_events=False,
        metrics=False,
        tenant_cache_s=0,
        retention_sweep_s=3600,
        retention_artifacts_days=getattr(request, "param", 90),
        blob_url=f"s3://lc{secrets.token_hex(4)}?account=123456789012"
        f"&endpoint={S3_ENDPOINTS['eu-a']}",
        blob_region="eu-a",
    )
    built = build_services(App(agents=[Agent(name="echo", model="scripted:echo")]), settings)
    await built.records.migrate()
    try:
        yield built
    finally:
        await built.close()


async def rules_of(services: Services) -> dict[str, tuple[str, int]]:
    """The bucket's rules: ID -> (prefix, days)."""
    assert services.artifacts is not None
    store = services.artifacts.blobs.stores["eu-a"]
    assert isinstance(store, S3BlobStore)
    rules = await current_rules(await store._s3(), store.options.bucket)
    return {r["ID"]: (r["Filter"]["Prefix"], r["Expiration"]["Days"]) for r in rules}


async def plant_operators_rule(services: Services) -> None:
    assert services.artifacts is not None
    store = services.artifacts.blobs.stores["eu-a"]
    assert isinstance(store, S3BlobStore)
    await store.ping()  # the bucket exists
    config = {"Rules": [OPERATORS_RULE]}
    s3 = await store._s3()
    await s3.put_bucket_lifecycle_configuration(
        Bucket=store.options.bucket,
        LifecycleConfiguration=config,  # type: ignore[arg-type]
    )


async def with_retention(services: Services, tenant: str, **days: int) -> None:
    policy = TenantPolicy(retention=Retention(**days))  # type: ignore[arg-type]
    await services.tenants.put(tenant, policy, changed_by="test")


def rule(tenant: str, days: int) -> tuple[str, tuple[str, int]]:
    prefix = tenant_prefix(tenant)
    return f"shipyard-{prefix}", (f"{prefix}/", days)


async def test_a_sweep_sets_and_updates_each_tenants_expiry_rule(services: Services) -> None:
    assert services.retention is not None
    await plant_operators_rule(services)
    await with_retention(services, "acme", artifacts_days=30)
    await with_retention(services, "globex", runs_days=5)  # artifacts: the server's 90

    await services.retention.sweep(now=datetime.now(UTC))
    assert await rules_of(services) == dict(
        [("archive-exports", ("exports/", 365)), rule("acme", 30), rule("globex", 90)]
    )

    await with_retention(services, "acme", artifacts_days=7)  # the retention changes
    await services.retention.sweep(now=datetime.now(UTC))
    assert await rules_of(services) == dict(
        [("archive-exports", ("exports/", 365)), rule("acme", 7), rule("globex", 90)]
    )


@pytest.mark.parametrize("services", [None], indirect=True)  # no server default
async def test_a_tenant_without_a_period_loses_its_rule(services: Services) -> None:
    assert services.retention is not None
    await with_retention(services, "acme", artifacts_days=30)
    await services.retention.sweep(now=datetime.now(UTC))
    assert await rules_of(services) == dict([rule("acme", 30)])

    await with_retention(services, "acme", runs_days=5)  # no artifact period any more
    await services.retention.sweep(now=datetime.now(UTC))
    assert await rules_of(services) == {}
