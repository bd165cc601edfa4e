"""Artifacts on two SeaweedFS servers standing for two regions, through the composition root
(``SHIPYARD_BLOB_URL=s3://...``, ``SHIPYARD_BLOB_REGIONS``): each tenant's home region decides
the bucket and endpoint, a read across regions is refused (403 ``region_denied``) and logged,
and downloads redirect to presigned URLs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from structlog.testing import capture_logs

from shipyard import Agent
from shipyard.app import App
from shipyard.config import load_settings
from shipyard.errors import RegionDenied
from shipyard.runtime.services import Services
from shipyard.stores.blobs.s3 import S3BlobStore
from shipyard.stores.records.policy import TenantPolicy
from tests.stores.blobs.conftest import S3_ENDPOINTS, S3_KEYS, s3_store

pytestmark = pytest.mark.s3

OPERATOR = "sk_shp_test_admin_artifacts_s3"


@pytest.fixture
async def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FastAPI]:
    await (await s3_store("eu-a")).close()  # skips (or fails) here when SeaweedFS is down
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEYS["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_KEYS["secret_access_key"])
    settings = load_settings(
        home=tmp_path,
        admin_key=OPERATOR,
        log_events=False,
        metrics=False,
        tenant_cache_s=0,
        blob_url=f"s3://ship{tmp_path.name[-6:].lower().replace('_', '')}?account=123456789012"
        f"&endpoint={S3_ENDPOINTS['eu-a']}&sse=AES256",
        blob_region="eu-a",
        blob_regions={"us-b": S3_ENDPOINTS["us-b"]},
        blob_presign_s=60,
    )
    asgi = App(agents=[Agent(name="echo", model="scripted:echo")]).asgi(settings)
    async with asgi.router.lifespan_context(asgi):
        yield asgi


def client(app: FastAPI, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://shipyard",
        headers={"Authorization": f"Bearer {key}"},
    )


async def tenant(app: FastAPI, name: str, region: str | None) -> str:
    services: Services = app.state.services
    if region is not None:
        await services.tenants.put(
            name, TenantPolicy(region=region), expected_version=None, changed_by="test"
        )
    secret, _ = await app.state.keys.create(name, ["invoke", "read"])
    return str(secret)


def stores(app: FastAPI) -> dict[str, S3BlobStore]:
    services: Services = app.state.services
    assert services.artifacts is not None
    found = services.artifacts.blobs.stores
    assert all(isinstance(s, S3BlobStore) for s in found.values())
    return found  # type: ignore[return-value]


async def test_each_tenant_writes_to_its_home_regions_bucket(app: FastAPI) -> None:
    by_region = stores(app)
    eu, us = by_region["eu-a"], by_region["us-b"]
    assert eu.options.bucket.endswith("-123456789012-eu-a-an")
    assert us.options.bucket.endswith("-123456789012-us-b-an")
    assert (eu.options.endpoint, us.options.endpoint) == (
        S3_ENDPOINTS["eu-a"],
        S3_ENDPOINTS["us-b"],
    )
    async with client(app, await tenant(app, "acme", "us-b")) as c:
        made = await c.post("/v1/artifacts", params={"name": "a.txt"}, content=b"in us-b")
        assert made.status_code == 201, made.text
        assert made.json()["region"] == "us-b"
    async with client(app, await tenant(app, "globex", None)) as c:
        made_eu = await c.post("/v1/artifacts", params={"name": "b.txt"}, content=b"in eu-a")
        assert made_eu.json()["region"] == "eu-a"
    us_keys = [info.key async for info in us.list("")]
    eu_keys = [info.key async for info in eu.list("")]
    assert any(k.endswith(made.json()["id"]) for k in us_keys)
    assert not any(k.endswith(made.json()["id"]) for k in eu_keys)
    assert any(k.endswith(made_eu.json()["id"]) for k in eu_keys)


async def test_downloads_redirect_to_a_presigned_url_with_sse(app: FastAPI) -> None:
    async with client(app, await tenant(app, "acme", "eu-a")) as c:
        made = (await c.post("/v1/artifacts", params={"name": "r"}, content=b"signed")).json()
        got = await c.get(f"/v1/artifacts/{made['id']}")
        assert got.status_code == 307
    async with httpx.AsyncClient() as plain:
        fetched = await plain.get(got.headers["location"])
    assert (fetched.status_code, fetched.content) == (200, b"signed")
    eu = stores(app)["eu-a"]
    key = next(iter([i.key async for i in eu.list("") if i.key.endswith(made["id"])]))
    head = await (await eu._s3()).head_object(Bucket=eu.options.bucket, Key=key)
    assert head.get("ServerSideEncryption") == "AES256"


async def test_a_read_across_regions_is_refused_and_logged(app: FastAPI) -> None:
    key = await tenant(app, "acme", "us-b")
    async with client(app, key) as c:
        made = (await c.post("/v1/artifacts", params={"name": "r"}, content=b"us data")).json()
        services: Services = app.state.services
        await services.tenants.put(
            "acme", TenantPolicy(region="eu-a"), expected_version=None, changed_by="test"
        )
        with capture_logs() as logs:
            refused = await c.get(f"/v1/artifacts/{made['id']}")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "region_denied"
    [denied] = [e for e in logs if e["event"] == "blob.region_denied"]
    assert (denied["tenant_id"], denied["region"], denied["home"]) == ("acme", "us-b", "eu-a")
    assert services.artifacts is not None
    with pytest.raises(RegionDenied):
        await services.artifacts.put("acme", b"x", name="n", region="us-b")
