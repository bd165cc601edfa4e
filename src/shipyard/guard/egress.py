"""The egress policy: which network addresses Shipyard may connect to on a caller's behalf.

Today it guards webhook targets (a tenant's ``webhook_url``); the security issue extends it to
tools. An address is denied unless it is globally routable: private (10/8, 172.16/12,
192.168/16), loopback, link-local (169.254/16, where cloud metadata lives; fe80::/10),
unique-local (fc00::/7), shared (100.64/10), multicast, unspecified, reserved and documentation
ranges are all refused; an IPv6 address that embeds an IPv4 one (``::ffff:a.b.c.d``, 6to4,
NAT64, Teredo) is judged by that IPv4 address too. Names are judged by what they resolve to,
so every spelling of an address (``2130706433``, ``0x7f000001``, ``127.1``) is the address.

The operator's allowlist (``SHIPYARD_WEBHOOK_ALLOW``) lets chosen targets through: host names,
IP addresses or CIDR ranges, each optionally with ``:port`` (IPv6 in brackets:
``[fd00::/8]:443``). A name on the list is trusted with whatever it resolves to.

The policy is checked twice: when a URL is accepted (``check_url``: scheme, no credentials,
and the addresses its host resolves to now), and when a connection is made
(:class:`GuardedBackend`, the network seam of the HTTP client: it resolves the host, checks
every address and connects only to a checked one, so a name that re-resolves to an internal
address after the first check — DNS rebinding — is refused all the same).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore
import httpx

from shipyard.errors import EgressDenied

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

RESOLVE_TIMEOUT_S = 5.0
"""Longest ``check_url`` waits for DNS (a name that does not resolve yet is checked again at
delivery)."""

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Allowed:
    """One allowlist entry: a host name or a network, and optionally a port."""

    name: str | None = None
    network: IPNetwork | None = None
    port: int | None = None

    def matches(self, host: str, address: IPAddress | None, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.name is not None:
            return host.lower().rstrip(".") == self.name
        return address is not None and self.network is not None and address in self.network


def parse_allow(raw: str) -> tuple[Allowed, ...]:
    """``SHIPYARD_WEBHOOK_ALLOW``: comma-separated entries; a bad one raises ``ValueError``."""
    return tuple(_entry(item.strip()) for item in raw.split(",") if item.strip())


def _entry(item: str) -> Allowed:
    host, port = _split_port(item)
    try:
        return Allowed(network=ipaddress.ip_network(host, strict=False), port=port)
    except ValueError:
        pass
    name = host.lower().rstrip(".")
    if not name or not all(c.isalnum() or c in "-._" for c in name):
        raise ValueError(f"allowlist entry {item!r} is not a host name, IP address or CIDR range")
    return Allowed(name=name, port=port)


def _split_port(item: str) -> tuple[str, int | None]:
    if item.startswith("["):  # [v6] or [v6/len], optionally :port
        host, _, rest = item[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else rest
    elif item.count(":") == 1:
        host, _, port_text = item.partition(":")
    else:  # a name, an IPv4 address or range, or a bare IPv6 one
        return item, None
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"allowlist entry {item!r} has a bad port")
    return host, int(port_text)


def denied_reason(address: IPAddress) -> str | None:
    """Why ``address`` may not be reached by default, or None when it is globally routable."""
    for embedded in _embedded_ipv4(address):
        reason = denied_reason(embedded)
        if reason is not None:
            return f"{reason} (embedded in {address})"
    checks = (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local (cloud metadata lives there)"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    )
    for attribute, reason in checks:
        if getattr(address, attribute):
            return f"a {reason} address"
    if isinstance(address, ipaddress.IPv6Address) and address in ipaddress.ip_network("fc00::/7"):
        return "a unique-local address"
    if not address.is_global:
        return "not a globally routable address"
    return None


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [address.ipv4_mapped, address.sixtofour, address.teredo[1] if address.teredo else None]
    if any(address in net for net in _NAT64):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [a for a in found if a is not None]


class EgressPolicy:
    """Which targets may be reached: globally routable addresses, and the allowlist's."""

    def __init__(self, allow: Sequence[Allowed] = ()) -> None:
        self._allow = tuple(allow)

    @classmethod
    def from_setting(cls, raw: str) -> EgressPolicy:
        return cls(parse_allow(raw))

    def check_address(self, host: str, address: IPAddress, port: int) -> None:
        """Raise ``EgressDenied`` unless ``address`` (which ``host`` resolved to) may be reached."""
        if any(entry.matches(host, address, port) for entry in self._allow):
            return
        reason = denied_reason(address)
        if reason is not None:
            shown = host if host == str(address) else f"{host} ({address})"
            raise EgressDenied(f"{shown} is {reason}; the egress policy refuses it")

    async def resolve(self, host: str, port: int, *, limit_s: float | None = None) -> list[str]:
        """The addresses ``host`` resolves to, each checked; raises ``EgressDenied`` if any is
        denied (a name that mixes public and internal addresses is refused as a whole)."""
        addresses = await _resolve(host, port, limit_s)
        for address in addresses:
            self.check_address(host, address, port)
        return [str(a) for a in addresses]

    async def check_url(self, url: str, *, field: str) -> None:
        """A URL a caller gives (``field`` names it in the error): http(s), no credentials, and
        its host resolves to allowed addresses only (an unresolvable one passes: the connection
        is checked again)."""
        host, port = url_target(url, field=field)
        try:
            await self.resolve(host, port, limit_s=RESOLVE_TIMEOUT_S)
        except EgressDenied as exc:
            raise EgressDenied(f"{field}: {exc.message}", details={"field": field}) from None
        except (OSError, TimeoutError):
            return


def url_target(url: str, *, field: str) -> tuple[str, int]:
    """The host and port ``url`` aims at; ``EgressDenied`` for credentials or another scheme."""
    parts = urlsplit(url)
    details = {"field": field}
    if parts.scheme not in _DEFAULT_PORTS:
        raise EgressDenied(f"{field}: only http and https URLs are allowed", details=details)
    if parts.username is not None or parts.password is not None:
        raise EgressDenied(
            f"{field}: credentials in the URL are not allowed (use the webhook signature)",
            details=details,
        )
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise EgressDenied(f"{field}: bad port", details=details) from None
    if not parts.hostname:
        raise EgressDenied(f"{field}: the URL has no host", details=details)
    return parts.hostname, port


async def _resolve(host: str, port: int, limit_s: float | None) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(limit_s):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise OSError(f"{host} resolves to no address")
    return found


def redact_url(url: str) -> str:
    """``url`` fit for a log or a message: its password shown as ``***``, no query or
    fragment values."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL one can take apart: keep only what follows credentials
        return url.rpartition("@")[2]
    userinfo, _, host = parts.netloc.rpartition("@")
    if userinfo:  # a user name alone may be a token: only one beside a password is shown
        userinfo = f"{parts.username or ''}:***" if password is not None else "***"
    netloc = f"{userinfo}@{host}" if userinfo else host
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}"


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network seam with the policy in it: resolve, check every address, connect
    only to a checked one. Raises ``EgressDenied`` (which httpx passes through unchanged)."""

    def __init__(self, policy: EgressPolicy, inner: httpcore.AsyncNetworkBackend | None = None):
        self._policy = policy
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._policy.resolve(host, port, limit_s=timeout)
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        failure: Exception = httpcore.ConnectError(f"cannot connect to {host}")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressDenied("the egress policy refuses Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(policy: EgressPolicy) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection goes through :class:`GuardedBackend` (no
    proxies from the environment: a proxy would connect on our behalf, unchecked)."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx builds its connection pool without a network backend option; this one is the same
    # pool with the guarded backend (httpx's own transport stays in charge of the mapping).
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        network_backend=GuardedBackend(policy),
    )
    return transport
