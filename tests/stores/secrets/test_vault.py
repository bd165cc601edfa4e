"""What only the Vault backend does: log in again when its token is revoked or expires, read
``VAULT_TOKEN``, and say what failed without a credential."""

from __future__ import annotations

import secrets
from pathlib import Path

import hvac
import pytest

from shipyard.errors import ConfigError, StoreError
from shipyard.stores.secrets.vault import VaultSecretStore
from tests.stores.secrets.conftest import OPENBAO_ADDR, OPENBAO_ROOT_TOKEN, vault_put, vault_url

pytestmark = pytest.mark.openbao


async def test_approle_logs_in_again_when_its_token_is_revoked(
    openbao: hvac.Client, tmp_path: Path
) -> None:
    folder = f"test-{secrets.token_hex(4)}"
    store = VaultSecretStore.from_url(vault_url(folder, "approle", tmp_path, openbao))
    try:
        await vault_put(openbao, folder)("svc", {"key": "one"})
        assert (await store.read("svc", "key")).value.get_secret_value() == "one"
        openbao.auth.token.revoke(store._client.token)
        await vault_put(openbao, folder)("svc", {"key": "two"})
        assert (await store.read("svc", "key")).value.get_secret_value() == "two"
    finally:
        await store.close()


async def test_a_token_comes_from_vault_token(
    openbao: hvac.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = f"test-{secrets.token_hex(4)}"
    await vault_put(openbao, folder)("svc", {"key": "from-env-token"})
    monkeypatch.setenv("VAULT_TOKEN", OPENBAO_ROOT_TOKEN)
    host = OPENBAO_ADDR.split("://", 1)[1]
    store = VaultSecretStore.from_url(f"vault+http://{host}/secret/{folder}")
    try:
        assert (await store.read("svc", "key")).value.get_secret_value() == "from-env-token"
    finally:
        await store.close()


async def test_a_wrong_token_is_a_store_error_that_names_no_token(
    openbao: hvac.Client, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("not-the-token-s3cr3t")
    host = OPENBAO_ADDR.split("://", 1)[1]
    store = VaultSecretStore.from_url(f"vault+http://{host}/secret?token_file={token_file}")
    try:
        with pytest.raises(StoreError) as caught:
            await store.read("anything", "key")
    finally:
        await store.close()
    assert "permission denied" in caught.value.message
    assert "s3cr3t" not in caught.value.message


async def test_an_unreachable_vault_is_a_store_error(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("t")
    store = VaultSecretStore.from_url(f"vault+http://127.0.0.1:1/secret?token_file={token_file}")
    with pytest.raises(StoreError, match="unreachable"):
        await store.ping()
    await store.close()


def test_a_bad_auth_method_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="token or approle"):
        VaultSecretStore.from_url("vault://vault:8200/secret?auth=kerberos")
    with pytest.raises(ConfigError, match="role_id"):
        VaultSecretStore.from_url("vault://vault:8200/secret?auth=approle")
