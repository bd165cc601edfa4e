"""The egress policy: which addresses a webhook (later, a tool) may reach, checked on the URL
and again on the connection, after DNS resolution."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shipyard.errors import EgressDenied
from shipyard.guard.egress import (
    EgressPolicy,
    denied_reason,
    literal_address,
    parse_allow,
    redact_url,
)
from shipyard.runtime.webhooks import WebhookSender

INTERNAL = [
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://10.0.0.5/hook",
    "http://172.16.3.4/hook",
    "http://192.168.1.1/hook",
    "http://[::1]/hook",
    "http://127.0.0.1:6379/",
    "http://2130706433/",  # 127.0.0.1, decimal
    "http://0x7f000001/",  # 127.0.0.1, hex
    "http://127.1/",
    "http://localhost:8000/hook",
    "http://0.0.0.0/",
    "http://[fd00:ec2::254]/",  # unique-local (AWS's IPv6 metadata)
    "http://[fe80::1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
    "http://224.0.0.1/",  # multicast
    "http://100.64.0.1/",  # shared address space
    "http://240.0.0.1/",  # reserved
]


@pytest.mark.parametrize("url", INTERNAL)
async def test_internal_targets_are_refused_in_every_spelling(url: str) -> None:
    with pytest.raises(EgressDenied) as caught:
        await EgressPolicy().check_url(url, field="webhook_url")
    assert caught.value.code == "egress_denied" and caught.value.status == 422
    assert caught.value.details == {"field": "webhook_url", "rule": "address"}
    assert caught.value.message.startswith("webhook_url: ")


@pytest.mark.parametrize(
    "url", ["http://user:pass@example.com/hook", "http://token@example.com/", "ftp://example.com/"]
)
async def test_credentials_and_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(EgressDenied):
        await EgressPolicy().check_url(url, field="webhook_url")


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert denied_reason(ipaddress.ip_address(address)) is None


async def test_the_allowlist_lets_chosen_targets_through() -> None:
    policy = EgressPolicy.from_setting("127.0.0.1:9000, 10.1.0.0/16, hooks.internal, [::1]")
    await policy.check_url("http://127.0.0.1:9000/hook", field="f")
    await policy.check_url("http://10.1.2.3/", field="f")
    await policy.check_url("http://[::1]:5/", field="f")
    for url in ("http://127.0.0.1:9001/", "http://10.2.0.1/"):
        with pytest.raises(EgressDenied):
            await policy.check_url(url, field="f")
    (entry,) = parse_allow("hooks.internal:8443")
    assert entry.matches("HOOKS.internal", ipaddress.ip_address("10.0.0.1"), 8443)
    assert not entry.matches("hooks.internal", ipaddress.ip_address("10.0.0.1"), 443)


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "a b", "host:port", "[::1]:70000"])
def test_a_bad_allowlist_entry_is_a_config_error(entry: str) -> None:
    with pytest.raises(ValueError, match="allowlist entry"):
        parse_allow(entry)


def test_urls_are_logged_without_credentials() -> None:
    shown = redact_url("https://user:s3cret@example.com:8443/hook?token=abc")
    assert shown == "https://user:***@example.com:8443/hook?…"


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[str]]]:
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            paths.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], paths
    finally:
        server.shutdown()
        server.server_close()


async def test_the_sender_connects_only_to_checked_addresses(
    receiver: tuple[int, list[str]],
) -> None:
    """The connection is checked after resolution: a name (``localhost``) or a spelling
    (``2130706433``) that lands on a loopback receiver is denied, not delivered, and final."""
    port, paths = receiver
    sender = WebhookSender("k" * 32, attempts=3)
    allowed = WebhookSender(
        "k" * 32, attempts=3, policy=EgressPolicy.from_setting(f"127.0.0.1:{port}")
    )
    try:
        for url in (f"http://localhost:{port}/a", f"http://2130706433:{port}/b"):
            outcome = await sender.attempt(url, tenant_id="t", event_id="1", body=b"{}", number=1)
            assert outcome == "denied"
        assert paths == []  # nothing reached the receiver
        delivered = await allowed.attempt(
            f"http://127.0.0.1:{port}/c", tenant_id="t", event_id="1", body=b"{}", number=1
        )
        assert delivered == "delivered" and paths == ["/c"]
    finally:
        await sender.close()
        await allowed.close()


async def test_metadata_addresses_need_an_entry_naming_them() -> None:
    """A range or a name on the allowlist never unlocks a cloud metadata address; an entry
    naming the very address does."""
    metadata = ipaddress.ip_address("169.254.169.254")
    for wide in ("169.254.0.0/16", "0.0.0.0/0", "metadata.google.internal", "[::/0]"):
        policy = EgressPolicy.from_setting(wide)
        with pytest.raises(EgressDenied, match="cloud metadata"):
            policy.check_address("metadata.google.internal", metadata, 80)
    EgressPolicy.from_setting("169.254.0.0/16").check_address(
        "h", ipaddress.ip_address("169.254.1.1"), 80
    )
    EgressPolicy.from_setting("169.254.169.254").check_address("h", metadata, 80)
    mapped = ipaddress.ip_address("::ffff:169.254.169.254")
    with pytest.raises(EgressDenied):
        EgressPolicy.from_setting("[::ffff:0:0/96]").check_address("h", mapped, 80)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("localhost.", "127.0.0.1"),
        ("Evil.LOCALHOST", "127.0.0.1"),
        ("[::1]", "::1"),
        ("fe80::1%eth0", "fe80::1"),
    ],
)
def test_every_spelling_is_read_as_its_address_before_any_lookup(host: str, address: str) -> None:
    assert literal_address(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", ["example.com", "0x7f.example", "1.2.3.4.example", "deadbeef"])
def test_names_are_left_to_the_resolver(host: str) -> None:
    assert literal_address(host) is None


def test_an_out_of_range_number_is_refused() -> None:
    with pytest.raises(EgressDenied):
        literal_address("4294967296")
