"""``shipyard doctor``: exit 0 on a production configuration that is ready, 1 with each problem
and its fix on one that is not (real stores: PostgreSQL, Redis, SQS on moto)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ROOT, SHIPYARD
from tests.stores.broker.conftest import SQS_ENV

REDIS_URL = os.environ.get("SHIPYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SHIPYARD, "doctor", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def base_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "AWS_"))}
    yield env | {"SHIPYARD_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.sqs
def test_a_ready_production_configuration_passes(
    base_env: dict[str, str], postgres_url: str
) -> None:
    env = (
        base_env
        | SQS_ENV
        | {
            "SHIPYARD_DATABASE_URL": postgres_url,
            "SHIPYARD_STATE_URL": REDIS_URL,
            "SHIPYARD_BROKER_URL": f"sqs://doctor{os.getpid()}",
            "SHIPYARD_BLOB_URL": "s3://shipyard?account=123456789012",
            "SHIPYARD_LIMIT_REQUESTS_PER_MINUTE": "600",
            "SHIPYARD_LIMIT_CONCURRENT_RUNS": "20",
            "SHIPYARD_MIGRATE_ON_START": "false",
        }
    )
    migrated = subprocess.run(
        [SHIPYARD, "migrate"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert migrated.returncode == 0, migrated.stderr
    result = doctor(env, "--env", "production", "--workers", "4", "--replicas", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    assert "the record store's schema is at the newest migration" in result.stdout
    assert "the broker answers" in result.stdout
    assert "ready (production rules)" in result.stdout


def test_an_unready_configuration_names_each_problem_and_its_fix(base_env: dict[str, str]) -> None:
    env = base_env | {
        "SHIPYARD_ADMIN_KEY": "sk_shp_plain_admin_key",
        "SHIPYARD_STATE_URL": "redis://cache.internal.invalid:6379/0",
        "SHIPYARD_MIGRATE_ON_START": "false",
    }
    result = doctor(env, "--env", "production")
    assert result.returncode == 1, result.stdout
    out = result.stdout
    expected = [
        ("plain credentials: SHIPYARD_ADMIN_KEY", "secret://<path>#<key>"),
        ("SHIPYARD_DATABASE_URL is embedded (sqlite)", "postgresql://"),
        ("SHIPYARD_STATE_URL connects to another host without TLS", "rediss://"),
        ("no default limits", "SHIPYARD_LIMIT_REQUESTS_PER_MINUTE"),
        ("the record store's schema is not at the newest migration", "shipyard migrate"),
        ("the state store does not answer", "check the state store's URL"),
    ]
    for problem, fix in expected:
        line = next((line for line in out.splitlines() if problem in line), None)
        assert line is not None and line.startswith("FAIL"), f"{problem!r} not failed in:\n{out}"
        assert fix in out.split(problem, 1)[1].split("\n")[1], f"no fix {fix!r} for {problem!r}"
    assert "not ready" in out


def test_development_tolerates_what_production_refuses(base_env: dict[str, str]) -> None:
    """The embedded defaults on one machine: warnings, exit 0 once the schema is current."""
    env = base_env | {"SHIPYARD_ADMIN_KEY": "sk_shp_plain_admin_key"}
    result = doctor(env)
    assert result.returncode == 0, result.stdout
    assert "warn  plain credentials: SHIPYARD_ADMIN_KEY" in result.stdout
    assert "FAIL" not in result.stdout
    in_memory = doctor(env | {"SHIPYARD_STATE_URL": "sqlite://"}, "--workers", "2")
    assert in_memory.returncode == 1
    assert "FAIL  SHIPYARD_STATE_URL is in memory, with several processes" in in_memory.stdout
