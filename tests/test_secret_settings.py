"""``secret://`` references in settings and provider keys, and the production refusal of plain
credentials (the environment backend: the default store)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import shipyard
from shipyard.agents.context import RunRequest
from shipyard.app import build_services, prepare_settings
from shipyard.cli import cli
from shipyard.config import load_settings
from shipyard.errors import ConfigError, ModelError, SecretNotFound
from shipyard.runtime.webhooks import tenant_secret
from shipyard.telemetry.logging import configure_logging
from tests.runtime.receivers import Receiver


def _files(folder: Path) -> list[bytes]:
    return [path.read_bytes() for path in folder.rglob("*") if path.is_file()]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def test_settings_references_are_read_at_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SECRET_DB__PASSWORD", "pw-from-store")
    monkeypatch.setenv("SECRET_WEBHOOKS__SIGNING", "signing-from-store")
    settings = prepare_settings(
        load_settings(
            home=tmp_path,
            database_url="postgresql://app:{secret://db#password}@127.0.0.1/app",
            webhook_signing_key="secret://webhooks#signing",
        )
    )
    assert settings.database_url == "postgresql://app:pw-from-store@127.0.0.1/app"
    assert settings.webhook_signing_key is not None
    assert settings.webhook_signing_key.get_secret_value() == "signing-from-store"


def test_a_reference_to_nothing_names_the_reference(tmp_path: Path) -> None:
    with pytest.raises(SecretNotFound, match="nowhere"):
        prepare_settings(load_settings(home=tmp_path, admin_key="secret://nowhere#key"))


def test_an_unknown_secret_store_scheme_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(home=tmp_path, secrets_url="consul://127.0.0.1:8500")
    assert "env://, file://, vault://" in caught.value.message


def test_production_refuses_plain_credentials_naming_each(tmp_path: Path) -> None:
    env = {
        "SHIPYARD_HOME": str(tmp_path),
        "SHIPYARD_ENV": "production",
        "SHIPYARD_DATABASE_URL": "postgresql://app:hunter2-x@127.0.0.1/app",
        "SHIPYARD_WEBHOOK_SIGNING_KEY": "plain-signing-x",
        "OPENAI_API_KEY": "sk-plain-x",
    }
    try:
        done = CliRunner().invoke(cli, ["serve"], env=env)
    finally:
        configure_logging("warning")  # the command logged to the runner's stream
    assert done.exit_code == 2
    said = done.output
    for name in ("SHIPYARD_DATABASE_URL", "SHIPYARD_WEBHOOK_SIGNING_KEY", "OPENAI_API_KEY"):
        assert name in said
    for value in ("hunter2-x", "plain-signing-x", "sk-plain-x"):
        assert value not in said


def test_production_starts_with_references_and_development_warns(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SECRET_OPENAI__KEY", "sk-in-store")
    monkeypatch.setenv("OPENAI_API_KEY", "secret://openai#key")
    prepare_settings(load_settings(home=tmp_path, env="production"))  # no refusal
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-plain-dev")
    prepare_settings(load_settings(home=tmp_path, env="development"))
    warning = capsys.readouterr().err
    assert warning.count("\n") == 1 and "OPENAI_API_KEY" in warning
    assert "sk-plain-dev" not in warning
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        prepare_settings(load_settings(home=tmp_path, env="production"))


async def test_a_provider_key_variable_that_is_a_reference_is_read_per_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, receiver: Receiver
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "secret://openai#key")
    monkeypatch.setenv("SECRET_OPENAI__KEY", "sk-env-one")
    agent = shipyard.Agent(name="a", model=f"openai:m?base_url={receiver.url}/v1&max_retries=0")
    settings = load_settings(home=tmp_path, secrets_cache_s=0)
    services = build_services(shipyard.App(agents=[agent]), settings)
    await services.records.migrate()
    await services.start()
    try:
        request = RunRequest(tenant_id="default", agent="a", input="hi")
        await services.invoker.invoke(request)
        monkeypatch.setenv("SECRET_OPENAI__KEY", "sk-env-two")
        await services.invoker.invoke(RunRequest(tenant_id="default", agent="a", input="hi"))
    finally:
        await services.close()
    assert receiver.authorizations("chat") == ["Bearer sk-env-one", "Bearer sk-env-two"]


def test_a_tool_declaring_a_secret_without_a_rule_stops_the_start(tmp_path: Path) -> None:
    @shipyard.tool(secrets=["github"])
    async def fetch() -> str:
        """Fetch."""
        return ""

    app = shipyard.App(agents=[shipyard.Agent(name="a", tools=[fetch])])
    with pytest.raises(ConfigError, match="'github'"):
        build_services(app, load_settings(home=tmp_path))


def test_a_tool_secret_rule_takes_a_reference_not_a_value(tmp_path: Path) -> None:
    rule = {"name": "github", "secret": "ghp-plain", "hosts": ["api.github.com"]}
    with pytest.raises(ConfigError, match="secret://"):
        load_settings(home=tmp_path, tool_secrets=[rule])


async def test_a_key_the_server_quotes_back_is_not_in_the_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, receiver: Receiver
) -> None:
    monkeypatch.setenv("SECRET_OPENAI__KEY", "sk-quote-me-4411")
    model = f"openai:m?base_url={receiver.url}/v1&max_retries=0&api_key=secret://openai%23key"
    agent = shipyard.Agent(name="a", model=model)
    services = build_services(shipyard.App(agents=[agent]), load_settings(home=tmp_path))
    await services.records.migrate()
    await services.start()
    try:
        with pytest.raises(ModelError) as caught:
            await services.invoker.invoke(RunRequest(tenant_id="default", agent="a", input="hi"))
    finally:
        await services.close()
    assert "[secret]" in caught.value.message and "401" in caught.value.message
    assert "sk-quote-me-4411" not in caught.value.message
    assert not [s for s in _files(tmp_path) if b"sk-quote-me-4411" in s]


async def test_the_webhook_signing_key_comes_from_the_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SECRET_WEBHOOKS__SIGNING", "signing-key-from-store")
    settings = load_settings(home=tmp_path, webhook_signing_key="secret://webhooks#signing")
    services = build_services(shipyard.App(agents=[]), settings)  # hand-built: resolved here
    await services.close()
    expected = tenant_secret("signing-key-from-store", "acme")
    assert services.webhooks.secret_for("acme") == expected
    assert not (tmp_path / "webhook.key").exists()  # no generated key instead


def test_prepared_production_settings_serve(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The CLI prepares the settings, then builds the app on them: their resolved password is
    no longer a reference, and must not be refused a second time."""
    monkeypatch.setenv("SECRET_DB__PASSWORD", "pw-resolved")
    url = "postgresql://app:{secret://db#password}@127.0.0.1:5432/app"
    prepared = prepare_settings(load_settings(home=tmp_path, env="production", database_url=url))
    assert prepared.database_url == "postgresql://app:pw-resolved@127.0.0.1:5432/app"
    shipyard.App(agents=[]).asgi(prepared, prepare=False)
