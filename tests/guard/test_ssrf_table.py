"""The SSRF table: URLs and redirect chains the egress policy must deny, and ones it must let
through, sent for real through the policy's transport (``EgressTransport`` over the guarded
connection pool) to real local HTTP servers.

Receiver ``A`` is allowed explicitly (``127.0.0.1:<A's port>``, as an operator would allow an
internal service); receiver ``B`` is not, and must never see a request. Names resolve through
a static table standing in for DNS (``api.example.test`` is 127.0.0.1, ``internal.example.test``
a private address...). Each denied case names the rule that must refuse it.
"""

# ruff: noqa: E501 (the table reads best one case a line)

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from shipyard.errors import EgressDenied
from shipyard.guard.egress import EgressPolicy, IPAddress, guarded_transport
from shipyard.guard.rules import EgressRules, Gate, Layer
from shipyard.guard.transport import EgressRecord, EgressTimeout, EgressTransport
from tests.guard.receivers import Receiver, receiving

DNS = {
    "api.example.test": ["127.0.0.1"],
    "example.test": ["127.0.0.1"],
    "internal.example.test": ["10.0.0.5"],
    "mixed.example.test": ["93.184.216.34", "127.0.0.1"],
    "meta.example.test": ["169.254.169.254"],
    "v6meta.example.test": ["fd00:ec2::254"],
}


async def static_dns(host: str, port: int) -> list[IPAddress]:
    """DNS as a table (the policy asks its resolver; this one has no network)."""
    try:
        return [ipaddress.ip_address(a) for a in DNS[host.lower()]]
    except KeyError:
        raise OSError(f"{host}: no such name") from None


@dataclass(frozen=True)
class Case:
    url: str
    rule: str
    rules: dict[str, list[Any]] | None = None
    """The agent layer's rules (a port ``"{a}"`` is receiver A's)."""
    method: str = "GET"
    tenant: tuple[str, ...] | None = None


def agent(**rules: Any) -> dict[str, Any]:
    return rules


# {a}, {b}: the receivers' ports; {hop:...} chains are built in ``resolve_url``.
DENIED: dict[str, Case] = {
    # loopback, in every spelling, at the receiver nobody allowed
    "loopback": Case("http://127.0.0.1:{b}/ok", "address"),
    "localhost": Case("http://localhost:{b}/ok", "address"),
    "localhost upper-case": Case("http://LOCALHOST:{b}/ok", "address"),
    "localhost trailing dot": Case("http://localhost.:{b}/ok", "address"),
    "*.localhost": Case("http://anything.localhost:{b}/ok", "address"),
    "decimal": Case("http://2130706433:{b}/ok", "address"),
    "hex": Case("http://0x7f000001:{b}/ok", "address"),
    "octal, short": Case("http://0177.1:{b}/ok", "address"),
    "dotted hex": Case("http://0x7f.0.0.1:{b}/ok", "address"),
    "short form": Case("http://127.1:{b}/ok", "address"),
    "trailing dot": Case("http://127.0.0.1.:{b}/ok", "address"),
    "IPv6 loopback": Case("http://[::1]:{b}/ok", "address"),
    "IPv4-mapped": Case("http://[::ffff:127.0.0.1]:{b}/ok", "address"),
    "IPv4-mapped hex": Case("http://[::ffff:7f00:1]:{b}/ok", "address"),
    "IPv4-mapped long": Case("http://[0:0:0:0:0:ffff:7f00:1]:{b}/ok", "address"),
    "IPv4-compatible": Case("http://[::127.0.0.1]:{b}/ok", "address"),
    "unspecified": Case("http://0.0.0.0:{b}/ok", "address"),
    "zero": Case("http://0:{b}/ok", "address"),
    "IPv6 unspecified": Case("http://[::]:{b}/ok", "address"),
    # cloud metadata
    "metadata": Case("http://169.254.169.254/latest/meta-data/", "address"),
    "metadata IPv6": Case("http://[fd00:ec2::254]/latest/meta-data/", "address"),
    "metadata decimal": Case("http://2852039166/", "address"),
    "metadata hex": Case("http://0xa9fea9fe/", "address"),
    "metadata octal, short": Case("http://0251.0376.43518/", "address"),
    "metadata mapped": Case("http://[::ffff:169.254.169.254]/", "address"),
    "metadata ECS": Case("http://169.254.170.2/v2/credentials", "address"),
    "metadata Alibaba": Case("http://100.100.100.200/latest/meta-data/", "address"),
    "metadata by name": Case("http://meta.example.test/", "address"),
    "metadata IPv6 by name": Case("http://v6meta.example.test/", "address"),
    # private, link-local, unique-local, multicast, reserved
    "10/8": Case("http://10.0.0.1/", "address"),
    "172.16/12": Case("http://172.16.0.1/", "address"),
    "192.168/16": Case("http://192.168.1.1/", "address"),
    "shared 100.64/10": Case("http://100.64.0.1/", "address"),
    "benchmarking": Case("http://198.18.0.1/", "address"),
    "unique-local": Case("http://[fc00::1]/", "address"),
    "link-local": Case("http://[fe80::1]/", "address"),
    "site-local": Case("http://[fec0::1]/", "address"),
    "multicast": Case("http://224.0.0.1/", "address"),
    "IPv6 multicast": Case("http://[ff02::1]/", "address"),
    "NAT64 of loopback": Case("http://[64:ff9b::7f00:1]/", "address"),
    "6to4 of loopback": Case("http://[2002:7f00:1::]/", "address"),
    "reserved": Case("http://240.0.0.1/", "address"),
    "broadcast": Case("http://255.255.255.255/", "address"),
    "a name for a private address": Case("http://internal.example.test/", "address"),
    "a name for public and loopback": Case("http://mixed.example.test:{b}/ok", "address"),
    # the rules: scheme, host, port, method, caps
    "ftp": Case("ftp://example.test/", "url"),
    "file": Case("file:///etc/passwd", "url"),
    "http under https-only": Case("http://127.0.0.1:{a}/ok", "agent.schemes", agent(schemes=["https"])),
    "host not listed": Case("http://127.0.0.1:{a}/ok", "agent.hosts", agent(hosts=["api.example.test"])),
    "wildcard is not the apex": Case("http://example.test:{a}/ok", "agent.hosts", agent(hosts=["*.example.test"])),
    "wildcard suffix trick": Case("http://api.example.test.evil.test/", "agent.hosts", agent(hosts=["*.example.test"])),
    "wildcard without the dot": Case("http://evilexample.test/", "agent.hosts", agent(hosts=["*.example.test"])),
    "a spelling the hosts rule does not list": Case("http://2130706433:{a}/ok", "agent.hosts", agent(hosts=["127.0.0.1"])),
    "port not listed": Case("http://127.0.0.1:{a}/ok", "agent.ports", agent(ports=[443])),
    "method not listed": Case("http://127.0.0.1:{a}/ok", "agent.methods", agent(methods=["GET"]), "DELETE"),
    "tenant narrows the agent": Case("http://api.example.test:{a}/ok", "tenant.hosts", agent(hosts=["*.example.test"]), tenant=("docs.example.test",)),
    "declared too large": Case("http://127.0.0.1:{a}/big?n=5000", "agent.max_response_bytes", agent(max_response_bytes=4096)),
    "streamed too large": Case("http://127.0.0.1:{a}/stream?n=50000", "agent.max_response_bytes", agent(max_response_bytes=4096)),
    "too slow": Case("http://127.0.0.1:{a}/slow", "agent.timeout_s", agent(timeout_s=0.3)),
    # redirect chains: every hop is checked again
    "redirect to the other receiver": Case("{hop:http://127.0.0.1:{b}/ok}", "address"),
    "redirect to metadata": Case("{hop:http://169.254.169.254/latest/meta-data/}", "address"),
    "redirect to metadata IPv6": Case("{hop:http://[fd00:ec2::254]/}", "address"),
    "three hops to a mapped address": Case("{hop:{hop:{hop:http://[::ffff:127.0.0.1]:{b}/ok}}}", "address"),
    "redirect to a private name": Case("{hop:http://internal.example.test/}", "address"),
    "redirect to localhost.": Case("{hop:http://localhost.:{b}/ok}", "address"),
    "redirect to decimal": Case("{hop:http://2130706433:{b}/ok}", "address"),
    "redirect to ftp": Case("{hop:ftp://example.test/}", "url"),
    "redirect to another spelling": Case("{hop:http://2130706433:{a}/ok}", "agent.hosts", agent(hosts=["127.0.0.1"])),
    "redirect to an unlisted host": Case("{hop307:http://api.example.test:{a}/ok}", "agent.hosts", agent(hosts=["127.0.0.1"]), "POST"),
    "redirect to https when http-only": Case("{hop:https://127.0.0.1:{a}/ok}", "agent.schemes", agent(schemes=["http"])),
    "redirect to an unlisted port": Case("{hop:http://127.0.0.1:{b}/ok}", "agent.ports", agent(ports=["{a}"])),
    "303 turns POST into a GET": Case("{hop303:http://127.0.0.1:{a}/ok}", "agent.methods", agent(methods=["POST"]), "POST"),
    "redirect past a tenant's hosts": Case("{hop:http://api.example.test:{a}/ok}", "tenant.hosts", tenant=("127.0.0.1",)),
}  # fmt: skip

ALLOWED: dict[str, Case] = {
    "the allowed receiver": Case("http://127.0.0.1:{a}/ok", ""),
    "its address spelt in decimal": Case("http://2130706433:{a}/ok", ""),
    "localhost at the allowed port": Case("http://localhost:{a}/ok", ""),
    "a wildcard host": Case("http://api.example.test:{a}/ok", "", agent(hosts=["*.example.test"])),
    "a wildcard host, upper-case, trailing dot": Case("http://API.Example.Test.:{a}/ok", "", agent(hosts=["*.example.test"])),
    "three hops on the allowed receiver": Case("{hop:{hop:{hop:http://127.0.0.1:{a}/ok}}}", ""),
    "303 from POST to GET, both listed": Case("{hop303:http://127.0.0.1:{a}/ok}", "", agent(methods=["GET", "POST"]), "POST"),
    "a redirect to a listed wildcard host": Case("{hop:http://api.example.test:{a}/ok}", "", agent(hosts=["127.0.0.1", "*.example.test"])),
    "an answer exactly at the cap": Case("http://127.0.0.1:{a}/big?n=4096", "", agent(max_response_bytes=4096)),
    "the tenant's hosts": Case("http://api.example.test:{a}/ok", "", agent(hosts=["*.example.test"]), tenant=("api.example.test",)),
    "listed port, method, scheme": Case("http://127.0.0.1:{a}/ok", "", agent(ports=["{a}"], methods=["PUT"], schemes=["http"]), "PUT"),
}  # fmt: skip


def resolve_url(template: str, a: Receiver, b: Receiver) -> str:
    """``{a}``/``{b}`` become ports; ``{hop:<url>}`` (``hop303``, ``hop307``) a URL on ``a``
    that redirects there, innermost first."""
    text = template.replace("{a}", str(a.port)).replace("{b}", str(b.port))
    while "{hop" in text:
        start = text.rindex("{hop")
        end = text.index("}", start)
        kind, _, target = text[start + 1 : end].partition(":")
        code = int(kind[3:] or 302)
        text = text[:start] + a.hop(target, code) + text[end + 1 :]
    return text


def agent_rules(rules: dict[str, Any] | None, a: Receiver) -> EgressRules | None:
    """The case's agent rules, a port ``"{a}"`` made receiver A's."""
    if rules is None:
        return None
    ports = rules.get("ports")
    if ports is not None:
        rules = {**rules, "ports": [a.port if p == "{a}" else p for p in ports]}
    return EgressRules(**rules)


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    with receiving() as a, receiving() as b:
        yield a, b
        assert b.seen == []  # no case reached the receiver nobody allowed


@pytest.fixture
async def pool(receivers: tuple[Receiver, Receiver]) -> AsyncIterator[httpx.AsyncBaseTransport]:
    a, _ = receivers
    policy = EgressPolicy.from_setting(f"127.0.0.1:{a.port}", resolver=static_dns)
    transport = guarded_transport(policy)
    yield transport
    await transport.aclose()


async def send(
    case: Case,
    pool: httpx.AsyncBaseTransport,
    receivers: tuple[Receiver, Receiver],
    records: list[EgressRecord],
) -> httpx.Response:
    """The case's request through the policy's transport (redirects followed), each hop's
    record into ``records``."""
    a, b = receivers
    layers = [Layer("server", "the server", EgressRules())]
    rules = agent_rules(case.rules, a)
    if rules is not None:
        layers.append(Layer("agent", "the agent", rules))
    if case.tenant is not None:
        layers.append(Layer("tenant", "the tenant", EgressRules(hosts=case.tenant)))
    gate = Gate(layers)

    async def current() -> Gate:
        return gate

    transport = EgressTransport(pool, current, records.append)
    url = resolve_url(case.url, a, b)
    async with httpx.AsyncClient(transport=transport, follow_redirects=True) as client:
        return await client.request(case.method, url, content=b"x")


@pytest.mark.parametrize("name", list(DENIED))
async def test_denied(
    name: str, pool: httpx.AsyncBaseTransport, receivers: tuple[Receiver, Receiver]
) -> None:
    """Refused with the case's rule named; every hop is one record, the last the denial, every
    one before it an allowed redirect."""
    case = DENIED[name]
    records: list[EgressRecord] = []
    with pytest.raises((EgressDenied, EgressTimeout)) as caught:
        await send(case, pool, receivers, records)
    error = caught.value
    if isinstance(error, EgressDenied):
        assert error.details["rule"] == case.rule, error.message
    assert f"rule: {case.rule}" in str(error)
    *before, last = records
    assert (last.allowed, last.rule) == (False, case.rule), records
    assert last.reason is not None and f"rule: {case.rule}" in last.reason
    assert all(r.allowed and r.status in (302, 303, 307) for r in before), records


@pytest.mark.parametrize("name", list(ALLOWED))
async def test_allowed(
    name: str, pool: httpx.AsyncBaseTransport, receivers: tuple[Receiver, Receiver]
) -> None:
    records: list[EgressRecord] = []
    reply = await send(ALLOWED[name], pool, receivers, records)
    assert reply.status_code == 200
    assert reply.content in (b"ok", b"x" * 4096)
    assert records and all(r.allowed and r.rule is None for r in records), records
    assert records[-1].status == 200 and records[-1].bytes == len(reply.content)
    assert len(records) == len(reply.history) + 1  # one record per hop


@pytest.mark.parametrize("url", ["http://0177.0.0.1/", "http://0251.0376.0251.0376/"])
async def test_dotted_octal_is_refused_by_the_url_parser_and_the_address_layer(url: str) -> None:
    """httpx refuses a dotted quad with leading zeros before anything is sent; the address
    layer reads it as the C library would (octal) and refuses it too, for any other client."""
    with pytest.raises(httpx.InvalidURL):
        httpx.URL(url)
    with pytest.raises(EgressDenied, match="rule: address"):
        await EgressPolicy(resolver=static_dns).check_url(url, field="url")


def test_the_table_is_large_enough() -> None:
    chains = [n for n, c in DENIED.items() if "{hop" in c.url]
    assert len(DENIED) >= 40 and len(chains) >= 10 and len(ALLOWED) >= 10
