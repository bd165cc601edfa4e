"""Secrets in a run, on a real OpenBao: a model key that is a ``secret://`` reference (rotated in
the vault, used at the next call), a tool whose credential is added at the egress edge (the
tool never sees it), and no raw value in any store, log or metric of the run."""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import generate_latest

import shipyard
from shipyard.agents.context import RunContext, RunRequest
from shipyard.app import build_services
from shipyard.config import load_settings
from shipyard.guard.tool_secrets import SecretRule
from shipyard.runtime.services import Services
from shipyard.telemetry.logging import configure_logging
from shipyard.telemetry.tracing import Tracing
from tests.runtime.receivers import Receiver
from tests.stores.secrets.conftest import OPENBAO_ADDR, openbao_root, vault_put, vault_url

pytestmark = pytest.mark.openbao


@pytest.fixture
def openbao() -> Iterator[hvac.Client]:
    client = openbao_root()
    yield client
    client.adapter.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def folder(openbao: hvac.Client) -> Iterator[str]:
    name = f"test-{secrets.token_hex(4)}"
    yield name
    for path in ("llm", "svc"):
        openbao.secrets.kv.v2.delete_metadata_and_all_versions(
            path=f"{name}/{path}", mount_point="secret"
        )


def _model(receiver: Receiver) -> str:
    return f"openai:m?base_url={receiver.url}/v1&max_retries=0&api_key=secret://llm%23key"


async def _invoke(services: Services, agent: str) -> str:
    outcome = await services.invoker.invoke(
        RunRequest(tenant_id="default", agent=agent, input="go")
    )
    return outcome.output


async def _exported_spans(services: Services) -> bytes:
    """What OTLP would export for the run: its stored events through a tracing sink."""
    exporter = InMemorySpanExporter()
    tracing = Tracing(processors=[SimpleSpanProcessor(exporter)])
    [run] = (await services.records.list_runs("default")).items
    for event in await services.records.list_events("default", run.id):
        tracing.sink(event)
    await tracing.close()
    finished = exporter.get_finished_spans()
    assert len(finished) >= 4  # the run, two model calls, the tools
    exported = "".join(span.to_json() for span in finished).encode()
    assert b"careless_api" in exported
    return exported


def _files(folder: Path) -> list[bytes]:
    return [path.read_bytes() for path in folder.rglob("*") if path.is_file()]


async def test_a_model_key_rotated_in_the_vault_is_used_at_the_next_call(
    openbao: hvac.Client, folder: str, receiver: Receiver, tmp_path: Path
) -> None:
    put = vault_put(openbao, folder)
    await put("llm", {"key": "sk-first-7f3a"})
    settings = load_settings(
        home=tmp_path,
        secrets_url=vault_url(folder, "approle", tmp_path, openbao),
        secrets_cache_s=0,
    )
    agent = shipyard.Agent(name="talker", model=_model(receiver))
    services = build_services(shipyard.App(agents=[agent]), settings)
    await services.records.migrate()
    await services.start()
    try:
        assert await _invoke(services, "talker") == "all done"
        await put("llm", {"key": "sk-second-91bc"})  # rotated: no restart
        assert await _invoke(services, "talker") == "all done"
    finally:
        await services.close()
    assert receiver.authorizations("chat") == ["Bearer sk-first-7f3a", "Bearer sk-second-91bc"]


async def test_no_secret_value_reaches_a_store_log_or_metric(
    openbao: hvac.Client, folder: str, receiver: Receiver, tmp_path: Path
) -> None:
    model_key, tool_token = "sk-model-" + secrets.token_hex(8), "tok-tool-" + secrets.token_hex(8)
    put = vault_put(openbao, folder)
    await put("llm", {"key": model_key})
    await put("svc", {"token": tool_token})
    seen_by_tool: list[dict[str, str]] = []

    @shipyard.tool(secrets=["svc"])
    async def call_api(ctx: RunContext) -> str:
        """Call the service."""
        response = await ctx.http.get(f"{receiver.url}/data")
        seen_by_tool.append(dict(response.request.headers))
        return response.text

    @shipyard.tool(secrets=["svc"])
    async def careless_api(ctx: RunContext) -> str:
        """Call a service that echoes the credential back (into the result and an event)."""
        response = await ctx.http.get(f"{receiver.url}/echo")
        ctx.emit("app.echoed", body=response.text)
        return response.text

    host = OPENBAO_ADDR.split("://", 1)[1]
    settings = load_settings(
        home=tmp_path,
        secrets_url=vault_url(folder, "token", tmp_path, openbao),
        tool_allow=f"127.0.0.1:{receiver.server.server_address[1]}",
        tool_secrets=[
            SecretRule(
                name="svc",
                secret="secret://svc#token",
                hosts=("127.0.0.1",),
                schemes=("http",),
            )
        ],
        log_level="debug",  # message bodies in the log records too
        log_format="json",
    )
    assert host  # the store is the OpenBao one
    logs = io.StringIO()
    configure_logging("debug", "json", stream=logs)
    agent = shipyard.Agent(name="user", model=_model(receiver), tools=[call_api, careless_api])
    try:
        services = build_services(shipyard.App(agents=[agent]), settings)
        await services.records.migrate()
        await services.start()
        try:
            assert await _invoke(services, "user") == "all done"
            metrics = generate_latest(services.observability.metrics.registry)  # type: ignore[union-attr]
            spans = await _exported_spans(services)
        finally:
            await services.close()
    finally:
        configure_logging("warning")
    # the credential went out at the edge, to the API only...
    assert receiver.authorizations("/data") == [f"Bearer {tool_token}"]
    assert receiver.authorizations("/echo") == [f"Bearer {tool_token}"]
    assert receiver.authorizations("chat") == [f"Bearer {model_key}"] * 2
    # the echoed value reached neither the model (its requests' bodies) nor the records
    assert b"careless_api" in receiver.bodies[-1] and b"[secret]" in receiver.bodies[-1]
    assert not [body for body in receiver.bodies if tool_token.encode() in body]
    # ...and the tool never held it
    assert seen_by_tool and "authorization" not in seen_by_tool[0]
    captured = _files(tmp_path)  # the records, state and broker files (SQLite, with their WALs)
    captured += [logs.getvalue().encode(), metrics, spans]
    assert len(logs.getvalue()) > 0 and any(b"call_api" in c for c in captured)
    for value in (model_key, tool_token):
        assert not [c for c in captured if value.encode() in c]
