"""Artifacts end to end: a real ``shipyard serve`` process with its blobs on S3 (SeaweedFS), an
agent's tool writing a 3 MB artifact, listed under its run and downloaded over HTTP, byte for
byte; another tenant gets 404."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.artifact_app import BLOCK, BLOCKS
from tests.servers import ServerProcess
from tests.stores.blobs.conftest import S3_ENDPOINTS, S3_KEYS, s3_store

pytestmark = pytest.mark.s3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    asyncio.run(_s3_up())
    proc = ServerProcess(
        home=tmp_path_factory.mktemp("home"),
        app="tests.e2e.artifact_app:app",
        env_extra={
            "SHIPYARD_BLOB_URL": f"s3://e2e?account=123456789012&endpoint={S3_ENDPOINTS['eu-a']}",
            "SHIPYARD_BLOB_REGION": "eu-a",
            "AWS_ACCESS_KEY_ID": S3_KEYS["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": S3_KEYS["secret_access_key"],
        },
    ).start()
    yield proc
    proc.stop()


async def _s3_up() -> None:
    await (await s3_store("eu-a")).close()  # skips (or fails) when SeaweedFS is down


def client(server: ServerProcess, tenant: str) -> httpx.Client:
    done = server.cli("keys", "create", "--tenant", tenant, "--scopes", "invoke,read")
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_a_tools_artifact_downloads_byte_for_byte(server: ServerProcess) -> None:
    with client(server, "acme") as acme, client(server, "globex") as globex:
        ran = acme.post("/v1/agents/exporter/invoke", json={"input": "export it"})
        assert ran.status_code == 200, ran.text
        run_id = ran.json()["run_id"]
        [item] = acme.get(f"/v1/runs/{run_id}/artifacts").json()["artifacts"]
        expected = BLOCK * BLOCKS
        assert (item["name"], item["size"], item["region"]) == ("data.bin", len(expected), "eu-a")
        assert item["sha256"] == hashlib.sha256(expected).hexdigest()
        with acme.stream("GET", f"/v1/artifacts/{item['id']}") as got:
            assert got.status_code == 200
            body = b"".join(got.iter_bytes())
        assert body == expected
        assert globex.get(f"/v1/artifacts/{item['id']}").status_code == 404
        assert globex.get(f"/v1/runs/{run_id}/artifacts").status_code == 404
