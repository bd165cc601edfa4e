"""The egress policy: which network addresses Shipyard may connect to on a caller's behalf.

It guards webhook targets (a tenant's ``webhook_url``) and tools' ``ctx.http``. An address is
denied unless it is globally routable: private (10/8, 172.16/12, 192.168/16), loopback,
link-local (169.254/16, where cloud metadata lives; fe80::/10), unique-local (fc00::/7),
site-local, shared (100.64/10), multicast, unspecified, reserved and documentation ranges are
all refused; an IPv6 address that embeds an IPv4 one (``::ffff:a.b.c.d``, 6to4, NAT64, Teredo)
is judged by that IPv4 address too. Names are judged by what they resolve to, so every spelling
of an address (``2130706433``, ``0x7f000001``, ``127.1``) is the address.

Alternate spellings are read as the C library reads them, before any lookup: ``2130706433``,
``0x7f000001``, ``0177.0.0.1``, ``127.1`` are 127.0.0.1; a trailing dot is dropped
(``localhost.`` is ``localhost``); ``localhost`` and every ``*.localhost`` name are loopback
(RFC 6761) whatever DNS says.

The operator's allowlist (``SHIPYARD_WEBHOOK_ALLOW``, ``SHIPYARD_TOOL_ALLOW``) lets chosen
targets through: host names, IP addresses or CIDR ranges, each optionally with ``:port`` (IPv6
in brackets: ``[fd00::/8]:443``). A name on the list is trusted with whatever it resolves to,
except a cloud metadata address (``METADATA``): only an entry naming that very address lets
one through, never a range or a name.

This module is the address layer; which schemes, hosts, ports and methods a caller may use,
and the size and time caps, are the rules layer (``guard.rules``), and the transport that puts
both on every request is ``guard.transport``.

The policy is checked twice: when a URL is accepted (``check_url``: scheme, no credentials,
and the addresses its host resolves to now), and when a connection is made
(:class:`GuardedBackend`, the network seam of the HTTP client: it resolves the host, checks
every address and connects only to a checked one, so a name that re-resolves to an internal
address after the first check — DNS rebinding — is refused all the same).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
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
_NUMERIC_V4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$", re.IGNORECASE)
_LOOPBACK = ipaddress.IPv4Address("127.0.0.1")

METADATA: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
"""Cloud metadata endpoints (AWS/GCP/Azure/OpenStack, AWS ECS, AWS over IPv6, Alibaba): they
hand out credentials, so only an allowlist entry naming the very address reaches one."""

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""Looks a host name up: its addresses (the default asks the system, ``getaddrinfo``)."""


@dataclass(frozen=True, slots=True)
class Allowed:
    """One allowlist entry: a host name or a network, and optionally a port."""

    name: str | None = None
    network: IPNetwork | None = None
    port: int | None = None

    def matches(self, host: str, address: IPAddress | None, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if address is not None and _metadata(address):  # only the very address, never a range
            net = self.network
            return net is not None and net.num_addresses == 1 and address in net
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


def _metadata(address: IPAddress) -> bool:
    return address in METADATA or any(a in METADATA for a in _embedded_ipv4(address))


def denied_reason(address: IPAddress) -> str | None:
    """Why ``address`` may not be reached by default, or None when it is globally routable."""
    if address in METADATA:
        return "a cloud metadata address"
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
    if isinstance(address, ipaddress.IPv6Address):
        if address in ipaddress.ip_network("fc00::/7"):
            return "a unique-local address"
        if address.is_site_local:
            return "a site-local address"
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


ADDRESS_RULE = "address"
"""The rule an address denial names (in ``EgressDenied.details`` and ``egress.request``)."""


class EgressPolicy:
    """Which targets may be reached: globally routable addresses, and the allowlist's.

    ``setting``: the knob that holds the allowlist, named in denials so an operator knows
    what to change. ``resolver``: how names are looked up (default: the system's)."""

    def __init__(
        self,
        allow: Sequence[Allowed] = (),
        *,
        setting: str | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self._allow = tuple(allow)
        self._setting = setting
        self._resolver = resolver or _system_resolve

    @classmethod
    def from_setting(
        cls, raw: str, *, setting: str | None = None, resolver: Resolver | None = None
    ) -> EgressPolicy:
        return cls(parse_allow(raw), setting=setting, resolver=resolver)

    def check_address(self, host: str, address: IPAddress, port: int) -> None:
        """Raise ``EgressDenied`` unless ``address`` (which ``host`` resolved to) may be reached."""
        if any(entry.matches(host, address, port) for entry in self._allow):
            return
        reason = denied_reason(address)
        if reason is not None:
            shown = host if host == str(address) else f"{host} ({address})"
            hint = f"; {self._setting} can allow it" if self._setting else ""
            raise EgressDenied(
                f"{shown} is {reason}; the egress policy refuses it (rule: {ADDRESS_RULE}{hint})",
                details={"rule": ADDRESS_RULE},
            )

    async def resolve(self, host: str, port: int, *, limit_s: float | None = None) -> list[str]:
        """The addresses ``host`` resolves to, each checked; raises ``EgressDenied`` if any is
        denied (a name that mixes public and internal addresses is refused as a whole)."""
        addresses = await self.addresses(host, port, limit_s=limit_s)
        for address in addresses:
            self.check_address(host, address, port)
        return [str(a) for a in addresses]

    async def addresses(
        self, host: str, port: int, *, limit_s: float | None = None
    ) -> list[IPAddress]:
        """What ``host`` stands for: a literal in any spelling, a ``localhost`` name, or the
        resolver's answer (``OSError`` or ``TimeoutError`` when there is none)."""
        literal = literal_address(host)
        if literal is not None:
            return [literal]
        async with asyncio.timeout(limit_s):
            found = await self._resolver(host.rstrip("."), port)
        if not found:
            raise OSError(f"{host} resolves to no address")
        return found

    async def check_url(self, url: str, *, field: str) -> None:
        """A URL a caller gives (``field`` names it in the error): http(s), no credentials, and
        its host resolves to allowed addresses only (an unresolvable one passes: the connection
        is checked again)."""
        host, port = url_target(url, field=field)
        try:
            await self.resolve(host, port, limit_s=RESOLVE_TIMEOUT_S)
        except EgressDenied as exc:
            raise EgressDenied(
                f"{field}: {exc.message}", details={"field": field, "rule": ADDRESS_RULE}
            ) from None
        except (OSError, TimeoutError):
            return


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells without a lookup, in any of the C library's spellings
    (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``, a trailing dot, ``[::1]``), or
    loopback for ``localhost`` and ``*.localhost``; None for a name to look up."""
    text = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        pass
    if _NUMERIC_V4.match(text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:  # out of range: no address at all
            raise EgressDenied(
                f"{host} is not a valid IPv4 address; the egress policy refuses it",
                details={"rule": ADDRESS_RULE},
            ) from None
    lowered = text.lower()
    if lowered == "localhost" or lowered.endswith(".localhost"):
        return _LOOPBACK
    return None


def url_target(url: str, *, field: str) -> tuple[str, int]:
    """The host and port ``url`` aims at; ``EgressDenied`` for credentials or another scheme."""
    parts = urlsplit(url)
    details = {"field": field, "rule": "url"}
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


async def _system_resolve(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
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
