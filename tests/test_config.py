"""Settings: environment, shipyard.toml, defaults, and errors that name the bad knob."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.config import load_settings
from shipyard.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("SHIPYARD_") or name == "OPENAI_API_KEY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_embedded() -> None:
    settings = load_settings()
    assert settings.home == Path(".shipyard")
    assert settings.resolved_database_url == "sqlite:///.shipyard/shipyard.db"
    assert settings.resolved_model == "local:smollm2"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)


def test_retention_defaults_are_the_workers_and_can_be_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from inspect import signature

    from shipyard.runtime.worker import Worker

    settings = load_settings()
    assert (settings.webhook_retention_s, settings.worker_retention_s) == (7 * 86400, 86400)
    defaults = signature(Worker).parameters
    assert defaults["webhook_retention_s"].default == settings.webhook_retention_s
    assert defaults["worker_retention_s"].default == settings.worker_retention_s
    monkeypatch.setenv("SHIPYARD_WEBHOOK_RETENTION_S", "3600")
    monkeypatch.setenv("SHIPYARD_WORKER_RETENTION_S", "600.5")
    settings = load_settings()
    assert (settings.webhook_retention_s, settings.worker_retention_s) == (3600, 600.5)


def test_openai_key_makes_openai_the_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert load_settings().resolved_model == "openai:gpt-4.1-mini"
    monkeypatch.setenv("SHIPYARD_MODEL", "scripted:echo")
    assert load_settings().resolved_model == "scripted:echo"


def test_environment_overrides_toml_which_overrides_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "shipyard.toml").write_text('port = 9001\nhost = "0.0.0.0"\n')
    assert (load_settings().port, load_settings().host) == (9001, "0.0.0.0")
    monkeypatch.setenv("SHIPYARD_PORT", "9002")
    assert load_settings().port == 9002


def test_config_file_can_be_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "prod.toml").write_text('database_url = "postgresql://db/shipyard"\n')
    monkeypatch.setenv("SHIPYARD_CONFIG", str(tmp_path / "prod.toml"))
    import importlib

    import shipyard.config

    importlib.reload(shipyard.config)  # the file name is read when the class is defined
    try:
        assert shipyard.config.load_settings().database_url == "postgresql://db/shipyard"
    finally:
        monkeypatch.delenv("SHIPYARD_CONFIG")
        importlib.reload(shipyard.config)


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("SHIPYARD_PORT", "eighty", "SHIPYARD_PORT"),
        ("SHIPYARD_PORT", "70000", "SHIPYARD_PORT"),
        ("SHIPYARD_DATABASE_URL", "mysql://x/y", "SHIPYARD_DATABASE_URL"),
        ("SHIPYARD_MODEL", "gpt-4", "SHIPYARD_MODEL"),
        ("SHIPYARD_MODEL", "nosuch:model", "SHIPYARD_MODEL"),
        ("SHIPYARD_RUN_TIMEOUT_S", "-1", "SHIPYARD_RUN_TIMEOUT_S"),
        ("SHIPYARD_LOG_LEVEL", "loud", "SHIPYARD_LOG_LEVEL"),
        ("SHIPYARD_WEBHOOK_RETENTION_S", "0", "SHIPYARD_WEBHOOK_RETENTION_S"),
        ("SHIPYARD_WORKER_RETENTION_S", "-5", "SHIPYARD_WORKER_RETENTION_S"),
    ],
)
def test_bad_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, complaint: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=complaint):
        load_settings()


def test_unknown_toml_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "shipyard.toml").write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="SHIPYARD_PROT"):
        load_settings()


def test_database_schemes_come_from_the_record_store_factory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shipyard.compose.backends as backends

    with pytest.raises(ConfigError) as caught:
        load_settings(database_url="mysql://x/y")
    for scheme in backends.RECORD_STORES:
        assert f"{scheme}://" in caught.value.message
    # A scheme the factory learns is one the settings accept: there is no second list.
    stores = {**backends.RECORD_STORES, "mysql": "somewhere:MySqlRecordStore"}
    monkeypatch.setattr(backends, "RECORD_STORES", stores)
    assert load_settings(database_url="mysql://x/y").database_url == "mysql://x/y"
