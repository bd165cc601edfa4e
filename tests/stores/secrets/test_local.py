"""What only the environment and file backends do: how a reference names a variable or a
file, Docker's one-file secrets, Kubernetes' bookkeeping files, and paths that try to escape."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.errors import SecretNotFound
from shipyard.stores.secrets.env import EnvSecretStore
from shipyard.stores.secrets.file import FileSecretStore


async def test_a_reference_names_one_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    store = EnvSecretStore.from_url("env://")
    assert store.variable("db/main", "password") == "SECRET_DB_MAIN__PASSWORD"
    monkeypatch.setenv("SECRET_DB_MAIN__PASSWORD", "pw")
    assert (await store.read("db/main", "password")).value.get_secret_value() == "pw"
    other = EnvSecretStore.from_url("env://?prefix=APP_")
    assert other.variable("github", "token") == "APP_GITHUB__TOKEN"


async def test_a_docker_secret_is_one_file_with_the_key_value(tmp_path: Path) -> None:
    (tmp_path / "db_password").write_text("docker-pw\n")
    store = FileSecretStore.from_url(f"file://{tmp_path}")
    assert (await store.read("db_password", "value")).value.get_secret_value() == "docker-pw"


async def test_kubernetes_bookkeeping_files_are_not_keys(tmp_path: Path) -> None:
    folder = tmp_path / "github"
    folder.mkdir()
    (folder / "token").write_text("ghp")
    (folder / "..data").write_text("link")
    store = FileSecretStore(tmp_path)
    assert (await store.read("github", "token")).value.get_secret_value() == "ghp"
    with pytest.raises(SecretNotFound):
        await store.read("github", "..data")


@pytest.mark.parametrize("path", ["../etc", "a/../../b", "/etc", ".hidden", "a//b"])
async def test_a_path_cannot_leave_the_folder(tmp_path: Path, path: str) -> None:
    (tmp_path / "inside").mkdir()
    store = FileSecretStore(tmp_path / "inside")
    with pytest.raises(SecretNotFound, match="not a plain relative path"):
        await store.read(path, "passwd")
