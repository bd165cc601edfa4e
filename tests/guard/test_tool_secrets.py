"""The tools' client adds a credential only for a tool that declared it, only to the rule's
hosts and schemes, and only to the copy of the request that leaves (a real local receiver)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from shipyard.guard.egress import EgressPolicy, guarded_transport
from shipyard.guard.tool_secrets import SecretRule, SecretTransport, granted_secrets
from shipyard.stores.secrets.env import EnvSecretStore
from shipyard.stores.secrets.refs import SecretCache
from tests.runtime.receivers import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
async def http(
    receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("SECRET_SVC__TOKEN", "tok-svc")
    monkeypatch.setenv("SECRET_OTHER__TOKEN", "tok-other")
    rules = [
        SecretRule(name="svc", secret="secret://svc#token", hosts=("127.0.0.*",), schemes=["http"]),
        SecretRule(name="other", secret="secret://other#token", hosts=("api.example.com",)),
        SecretRule(
            name="tls-only", secret="secret://svc#token", hosts=("127.0.0.1",), header="X-Key",
            template="{secret}",
        ),
    ]  # fmt: skip
    # the edge of the tools' egress (app.build_egress puts it under the egress rules' checks)
    pool = guarded_transport(EgressPolicy.from_setting("127.0.0.1"))
    secrets = SecretCache(EnvSecretStore(), cache_s=0)
    client = httpx.AsyncClient(transport=SecretTransport(pool, rules, secrets))
    yield client
    await client.aclose()


async def test_only_a_granted_name_for_a_matching_host_and_scheme_adds_it(
    http: httpx.AsyncClient, receiver: Receiver
) -> None:
    await http.get(f"{receiver.url}/none")  # no tool grant
    with granted_secrets(["other", "tls-only"]):  # other host; https only
        await http.get(f"{receiver.url}/elsewhere")
    with granted_secrets(["svc"]):
        response = await http.get(f"{receiver.url}/granted", headers={"Authorization": "mine"})
    assert receiver.authorizations("/none") == [None]
    assert receiver.authorizations("/elsewhere") == [None]
    assert [h.get("x-key") for _, h in receiver.requests] == [None, None, None]
    assert receiver.authorizations("/granted") == ["Bearer tok-svc"]  # the rule wins
    assert response.request.headers["Authorization"] == "mine"  # the tool's copy is untouched
