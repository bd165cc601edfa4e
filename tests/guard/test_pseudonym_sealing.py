"""The pseudonym mappings are sealed at rest: the raw value in the state store (SQLite and Redis)
holds no original, reveal still works, and after a key rotation in the secret store (a new key
listed before the old one on every store; a new version alone on Vault / OpenBao) the mappings
sealed with the old key still reveal. A sealed value moved under another run's key does not
open, and a value sealed with a key no longer known reads as no mapping."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from shipyard import Agent
from shipyard.config import load_settings
from shipyard.errors import ConfigError
from shipyard.runtime.pseudonym_keys import SCHEME, PseudonymKeys
from shipyard.runtime.pseudonyms import PseudonymVault, owner_of
from shipyard.secret_settings import plain_credentials, resolve_settings
from shipyard.stores.secrets.env import EnvSecretStore
from shipyard.stores.secrets.refs import SecretCache
from shipyard.stores.secrets.vault import VaultSecretStore
from shipyard.stores.state.base import StateStore
from shipyard.testing import ScriptedModel
from tests.guard.test_pseudonymize import EMAIL, KEY, NAME, PSEUDONYMIZE, SAID, Run, state
from tests.stores.secrets.conftest import Backend, backend, openbao_root, vault_put, vault_url
from tests.stores.state.conftest import store

__all__ = ["backend", "state", "store"]  # fixtures

OLD, NEW = secrets.token_hex(32), secrets.token_hex(32)


async def sealed_run(state: StateStore, keys: PseudonymKeys) -> tuple[Run, str]:
    """One pseudonymizing run; its id."""
    run = Run(Agent(name="a", model=ScriptedModel(echo=True), guards=PSEUDONYMIZE), state, keys)
    return run, (await run(SAID)).run_id


async def test_the_stored_mapping_holds_no_original_and_still_reveals(state: StateStore) -> None:
    run, run_id = await sealed_run(state, PseudonymKeys(KEY))
    raw = await state.get(PseudonymVault.key("t1", owner_of(run_id, None)))
    assert raw is not None and raw.startswith(SCHEME + b":")
    for original in (NAME, EMAIL, "Maria", "maria", "PERSON_1"):
        assert original.encode() not in raw
    assert await run.vault.reveal("t1", run_id, None) == {
        "<PERSON_1>": NAME,
        "<EMAIL_ADDRESS_1>": EMAIL,
    }


async def test_a_sealed_mapping_opens_only_under_its_own_key(state: StateStore) -> None:
    run, run_id = await sealed_run(state, PseudonymKeys(KEY))
    raw = await state.get(PseudonymVault.key("t1", owner_of(run_id, None)))
    assert raw is not None
    await state.set(PseudonymVault.key("t2", owner_of(run_id, None)), raw, ttl_s=60)
    assert await run.vault.reveal("t2", run_id, None) is None  # moved to another tenant
    other = PseudonymVault(state, PseudonymKeys("o" * 40), ttl_s=600, session_ttl_s=600)
    assert await other.reveal("t1", run_id, None) is None  # a key that never sealed it


async def test_after_a_rotation_listing_the_old_key_old_mappings_reveal(
    state: StateStore, backend: Backend
) -> None:
    await backend.put("pii", {"key": OLD})
    keys = PseudonymKeys("secret://pii#key", SecretCache(backend.store, cache_s=0))
    run, before = await sealed_run(state, keys)
    await backend.put("pii", {"key": f"{NEW} {OLD}"})  # new first; old kept to open
    after = (await run(f"And {NAME} again")).run_id
    assert await run.vault.reveal("t1", before, None) == {
        "<PERSON_1>": NAME,
        "<EMAIL_ADDRESS_1>": EMAIL,
    }
    assert await run.vault.reveal("t1", after, None) == {"<PERSON_1>": NAME}
    raw_before = await state.get(PseudonymVault.key("t1", owner_of(before, None)))
    raw_after = await state.get(PseudonymVault.key("t1", owner_of(after, None)))
    assert raw_before is not None and raw_after is not None
    assert raw_before.split(b":")[1] != raw_after.split(b":")[1]  # sealed under the new key
    await backend.put("pii", {"key": NEW})  # the old key retired: its mappings are gone
    fresh = PseudonymKeys("secret://pii#key", SecretCache(backend.store, cache_s=0))
    if not isinstance(backend.store, VaultSecretStore):  # Vault still has the old version
        assert (
            await PseudonymVault(state, fresh, ttl_s=1, session_ttl_s=1).reveal("t1", before, None)
            is None
        )


@pytest.mark.openbao
async def test_after_a_new_version_in_vault_old_mappings_reveal(
    state: StateStore, tmp_path: Path
) -> None:
    client = openbao_root()
    folder = f"test-{secrets.token_hex(4)}"
    store = VaultSecretStore.from_url(vault_url(folder, "token", tmp_path, client))
    put = vault_put(client, folder)
    try:
        await put("pii", {"key": OLD})
        _, before = await sealed_run(
            state, PseudonymKeys("secret://pii#key", SecretCache(store, cache_s=0))
        )
        await put("pii", {"key": NEW})  # version 2 holds only the new key
        restarted = PseudonymKeys("secret://pii#key", SecretCache(store, cache_s=0))
        vault = PseudonymVault(state, restarted, ttl_s=600, session_ttl_s=600)
        assert await vault.reveal("t1", before, None) == {
            "<PERSON_1>": NAME,
            "<EMAIL_ADDRESS_1>": EMAIL,
        }
    finally:
        await store.close()
        client.secrets.kv.v2.delete_metadata_and_all_versions(
            path=f"{folder}/pii", mount_point="secret"
        )
        client.adapter.close()


def test_a_short_or_empty_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="32 characters"):
        PseudonymKeys("short")
    with pytest.raises(ConfigError, match="empty"):
        PseudonymKeys(" , ")


async def test_the_key_setting_is_a_credential_read_at_each_use() -> None:
    plain = load_settings(pseudonym_key=KEY)
    assert "SHIPYARD_PSEUDONYM_KEY" in plain_credentials(plain, {})
    referenced = load_settings(pseudonym_key="secret://pii#key")
    assert plain_credentials(referenced, {}) == []
    empty = EnvSecretStore(prefix=f"SECRET_T{secrets.token_hex(3).upper()}_")  # would raise
    resolved = await resolve_settings(referenced, SecretCache(empty, cache_s=0))
    assert resolved.pseudonym_key is not None
    assert resolved.pseudonym_key.get_secret_value() == "secret://pii#key"  # not resolved
