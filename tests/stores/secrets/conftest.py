"""Fixtures for the secret store contract: one ``backend`` per store — environment, files, and a
real OpenBao (Vault's API) with token and with AppRole auth — each with a ``put`` that writes
a secret the way an operator would (export, a mounted file, the vault's API).

OpenBao runs in dev mode on 127.0.0.1:18200 (``scripts/services.sh`` starts it); each test
works under a fresh folder of the ``secret/`` mount.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import hvac
import pytest
import requests

from shipyard.errors import StoreError
from shipyard.stores.secrets.base import SecretStore
from shipyard.stores.secrets.env import EnvSecretStore
from shipyard.stores.secrets.file import FileSecretStore
from shipyard.stores.secrets.vault import VaultSecretStore
from tests.conftest import missing_service

OPENBAO_ADDR = os.environ.get("SHIPYARD_TEST_OPENBAO_ADDR", "http://127.0.0.1:18200")
OPENBAO_ROOT_TOKEN = os.environ.get("SHIPYARD_TEST_OPENBAO_TOKEN", "shipyard-dev-root")

Put = Callable[[str, dict[str, str]], Awaitable[None]]


@dataclass
class Backend:
    store: SecretStore
    put: Put


def openbao_root() -> hvac.Client:
    """A root client on the test OpenBao; skips (fails under SHIPYARD_REQUIRE_SERVICES=1)
    when it is not running."""
    client = hvac.Client(url=OPENBAO_ADDR, token=OPENBAO_ROOT_TOKEN, timeout=5)
    try:
        client.auth.token.lookup_self()
    except (requests.RequestException, hvac.exceptions.VaultError) as exc:
        client.adapter.close()
        missing_service(f"OpenBao unreachable at {OPENBAO_ADDR}: {exc!r}")
    return client


def approle(client: hvac.Client, folder: str, tmp_path: Path) -> tuple[str, Path]:
    """An AppRole allowed to read ``secret/<folder>/*``: its role id and a secret id file."""
    if "approle/" not in client.sys.list_auth_methods()["data"]:
        client.sys.enable_auth_method("approle")
    policy = f'path "secret/data/{folder}/*" {{ capabilities = ["read"] }}\n'
    policy += f'path "secret/metadata/{folder}/*" {{ capabilities = ["read"] }}\n'
    client.sys.create_or_update_policy(name=folder, policy=policy)
    client.auth.approle.create_or_update_approle(
        role_name=folder, token_policies=[folder], token_ttl="5m"
    )
    role_id = client.auth.approle.read_role_id(role_name=folder)["data"]["role_id"]
    secret_id = client.auth.approle.generate_secret_id(role_name=folder)["data"]["secret_id"]
    secret_id_file = tmp_path / "secret-id"
    secret_id_file.write_text(secret_id + "\n")
    return role_id, secret_id_file


@pytest.fixture
def openbao() -> Iterator[hvac.Client]:
    client = openbao_root()
    yield client
    client.adapter.close()


def vault_put(client: hvac.Client, folder: str, written: list[str] | None = None) -> Put:
    async def put(path: str, items: dict[str, str]) -> None:
        if written is not None:
            written.append(path)
        client.secrets.kv.v2.create_or_update_secret(
            path=f"{folder}/{path}", secret=items, mount_point="secret"
        )

    return put


def vault_url(folder: str, auth: str, tmp_path: Path, client: hvac.Client) -> str:
    base = f"vault+http://{OPENBAO_ADDR.split('://', 1)[1]}/secret/{folder}"
    if auth == "approle":
        role_id, secret_id_file = approle(client, folder, tmp_path)
        return f"{base}?auth=approle&role_id={role_id}&secret_id_file={secret_id_file}"
    token_file = tmp_path / "token"
    token_file.write_text(OPENBAO_ROOT_TOKEN)
    return f"{base}?token_file={token_file}"


@pytest.fixture(
    params=[
        "env",
        "file",
        pytest.param("vault-token", marks=pytest.mark.openbao),
        pytest.param("vault-approle", marks=pytest.mark.openbao),
    ]
)
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Backend]:
    kind: str = request.param
    if kind == "env":
        env = EnvSecretStore(prefix=f"SECRET_T{secrets.token_hex(3).upper()}_")

        async def put_env(path: str, items: dict[str, str]) -> None:
            for key, value in items.items():
                monkeypatch.setenv(env.variable(path, key), value)

        yield Backend(env, put_env)
        return
    if kind == "file":
        folder = tmp_path / "secrets"
        folder.mkdir()

        async def put_file(path: str, items: dict[str, str]) -> None:
            (folder / path).mkdir(parents=True, exist_ok=True)
            for key, value in items.items():
                (folder / path / key).write_text(value + "\n")

        yield Backend(FileSecretStore.from_url(f"file://{folder}"), put_file)
        return
    client = openbao_root()
    folder = f"test-{secrets.token_hex(4)}"
    store = VaultSecretStore.from_url(vault_url(folder, kind.split("-")[1], tmp_path, client))
    try:
        await store.ping()
    except StoreError as exc:
        missing_service(f"OpenBao refused the test store: {exc.message}")
    written: list[str] = []
    try:
        yield Backend(store, vault_put(client, folder, written))
    finally:
        await store.close()
        for path in set(written):
            client.secrets.kv.v2.delete_metadata_and_all_versions(
                path=f"{folder}/{path}", mount_point="secret"
            )
        client.adapter.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "openbao: needs the OpenBao (Vault API) service")
