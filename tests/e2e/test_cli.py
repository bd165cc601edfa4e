"""The ``shipyard`` command: first start, bad settings, invoke against a server and in-process."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from shipyard.stores.records import engines
from tests.servers import ROOT, SHIPYARD, ServerProcess, free_port

KEY = re.compile(r"sk_shp_[A-Za-z0-9_-]{20,}")


@pytest.fixture
def first_start(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(home=tmp_path, app=None, admin_key=None)  # serves the examples
    yield server
    server.stop()


def test_first_start_prints_an_admin_key_once(first_start: ServerProcess) -> None:
    first_start.start()
    keys = KEY.findall(first_start.log)
    assert len(keys) == 1
    reply = httpx.post(
        f"{first_start.url}/v1/agents/echo/invoke",
        json={"input": "hi"},
        headers={"Authorization": f"Bearer {keys[0]}"},
    )
    assert reply.status_code == 200 and reply.json()["output"] == "echo: hi"
    first_start.stop()
    first_start.start()
    assert KEY.findall(first_start.log) == []  # the log file was rewritten by the new process


def test_invoke_against_a_running_server(first_start: ServerProcess) -> None:
    first_start.admin_key = "sk_shp_cli_admin_key_for_tests_0000"
    first_start.start()
    done = first_start.cli("invoke", "echo", "from the cli", "--url", first_start.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "echo: from the cli"
    assert '"run_id": "run_' in done.stderr
    refused = first_start.cli(
        "invoke", "echo", "x", "--url", first_start.url, "--key", "sk_shp_bad"
    )
    assert refused.returncode == 2 and "401" in refused.stderr


def test_invoke_local_runs_in_process(tmp_path: Path) -> None:
    server = ServerProcess(home=tmp_path, app="examples.assistant:app")
    done = server.cli("invoke", "echo", "no server needed", "--local")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "echo: no server needed"
    missing = server.cli("invoke", "nobody", "x", "--local")
    assert missing.returncode == 2 and "no agent named 'nobody'" in missing.stderr


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"SHIPYARD_PORT": "eighty"}, "SHIPYARD_PORT"),
        ({"SHIPYARD_DATABASE_URL": "mongodb://x"}, "SHIPYARD_DATABASE_URL"),
        ({"SHIPYARD_APP": "no_such_module:app"}, "cannot import 'no_such_module'"),
        ({"SHIPYARD_APP": "examples.assistant:assistant"}, "is not a shipyard.App"),
    ],
)
def test_bad_settings_stop_the_start(tmp_path: Path, env: dict[str, str], complaint: str) -> None:
    server = ServerProcess(home=tmp_path, app="examples.assistant:app", env_extra=env)
    done = subprocess.run(
        [SHIPYARD, "serve"], env=server.env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert complaint in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["serve", "worker"])
@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"SHIPYARD_DATABASE_URL": "postgresql://postgres:s3cret@127.0.0.1:{port}/shipyard"},
            "cannot reach the record store at postgresql://postgres:***@127.0.0.1:{port}/shipyard",
        ),
        (
            {"SHIPYARD_STATE_URL": "redis://:s3cret@127.0.0.1:{port}/0"},
            "cannot reach the state store at redis://:***@127.0.0.1:{port}/0",
        ),
        (
            {"SHIPYARD_BROKER_URL": "amqp://guest:s3cret@127.0.0.1:5672/no-such-vhost"},
            "cannot reach the broker at amqp://guest:***@127.0.0.1:5672/no-such-vhost",
        ),
        (
            {"SHIPYARD_MEMORY_URL": "postgresql://postgres:s3cret@127.0.0.1:{port}/memories"},
            "cannot reach the memory store at postgresql://postgres:***@127.0.0.1:{port}/memories",
        ),
    ],
    ids=["records", "state", "broker", "memory"],
)
def test_an_unreachable_store_stops_the_start(
    tmp_path: Path, command: str, env: dict[str, str], line: str
) -> None:
    """Every configured store is checked before serving: one line naming the store and its URL
    (without the password), exit code 2. Unused ports; a RabbitMQ vhost that does not exist."""
    port = str(free_port())
    env = {k: v.replace("{port}", port) for k, v in env.items()}
    server = ServerProcess(home=tmp_path, app="examples.assistant:app", env_extra=env)
    done = subprocess.run(
        [SHIPYARD, command], env=server.env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    errors = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {line.replace('{port}', port)}: ")
    assert "s3cret" not in done.stderr and "Traceback" not in done.stderr


def test_keys_create_refuses_unknown_scopes(tmp_path: Path) -> None:
    server = ServerProcess(home=tmp_path, app="examples.assistant:app")
    done = server.cli("keys", "create", "--tenant", "acme", "--scopes", "invoke,root")
    assert done.returncode == 2 and "scopes must be some of" in done.stderr


def _revisions() -> tuple[str, str]:
    """The newest migration and the one before it."""
    script = ScriptDirectory.from_config(engines.alembic_config())
    head = script.get_current_head()
    assert head is not None
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str)
    return previous, head


def test_migrate_says_what_it_did_and_is_idempotent(tmp_path: Path) -> None:
    server = ServerProcess(home=tmp_path, app="examples.assistant:app")
    _, head = _revisions()
    url = f"sqlite:///{tmp_path / 'shipyard.db'}"

    created = server.cli("migrate")
    assert created.returncode == 0, created.stderr
    assert created.stdout == f"record store: created the schema at revision {head} ({url})\n"
    again = server.cli("migrate")
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"record store: already at revision {head} ({url})\n"


def test_migrate_names_the_revisions_it_went_through(tmp_path: Path) -> None:
    previous, head = _revisions()
    config = engines.alembic_config()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'shipyard.db'}")
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, previous)
    engine.dispose()

    done = ServerProcess(home=tmp_path, app="examples.assistant:app").cli("migrate")

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"record store: migrated from revision {previous} to {head} (")


def test_the_banner_names_the_default_model(tmp_path: Path) -> None:
    server = ServerProcess(home=tmp_path, app=None, env_extra={"SHIPYARD_MODEL": "scripted:echo"})
    try:
        server.start()
        assert "default model: scripted:echo (SHIPYARD_MODEL)" in server.log
    finally:
        server.stop()
