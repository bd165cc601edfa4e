"""The rules layer of the egress policy: which schemes, hosts, ports and methods a caller may
use, and how big and how slow an answer may be.

An ``EgressRules`` is one layer; an unset field (``None``) does not narrow. A ``Gate`` stacks
layers — the server's default (``SHIPYARD_EGRESS_*``), an agent's (``Agent(egress=...)``), the
tenant policy's ``egress.allow`` — and a request passes only if every layer lets it: each layer
narrows, none widens. The caps are the smallest any layer sets. A denial names its rule as
``<layer>.<field>`` (``agent.hosts``, ``server.methods``, ``tenant.allow``), in the message and
in ``EgressDenied.details["rule"]``.

Host patterns: ``api.github.com`` (that name), ``*.example.com`` (any name under it, at any
depth, not ``example.com`` itself), ``*`` (any host), or an IP address (that literal). Names
are compared lower-case, IDNA-encoded, without a trailing dot.

The address layer (``guard.egress``: what a host resolves to, private ranges, metadata) is
checked as well, when the connection is made; the rules never widen it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shipyard.errors import ConfigError, EgressDenied

ANY = "*"
SCHEMES = ("http", "https")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_FIELDS = ("schemes", "hosts", "ports", "methods")


def normal_host(host: str) -> str:
    """``host`` as rules compare it: lower-case, IDNA, no trailing dot, no IPv6 brackets."""
    text = host.strip().strip("[]").rstrip(".").lower()
    try:
        return text.encode("idna").decode("ascii")
    except UnicodeError:
        return text


def host_matches(pattern: str, host: str) -> bool:
    """Whether ``host`` (normalised) matches ``pattern`` (normalised): see the module text."""
    if pattern == ANY:
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


@dataclass(frozen=True, slots=True, kw_only=True)
class EgressRules:
    """One layer of the egress policy; ``None`` leaves a field to the other layers.

    ``hosts``: patterns (``api.github.com``, ``*.example.com``, ``*``). ``schemes``: ``http``,
    ``https``. ``ports``: numbers. ``methods``: HTTP methods. ``max_response_bytes``: the
    largest answer body, on the wire. ``timeout_s``: the longest one request may take, from
    sending it to its last byte read (each redirect hop is a request)."""

    hosts: Sequence[str] | None = None
    schemes: Sequence[str] | None = None
    ports: Sequence[int] | None = None
    methods: Sequence[str] | None = None
    max_response_bytes: int | None = None
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        if self.hosts is not None:
            put("hosts", tuple(_host_pattern(h) for h in _listed("hosts", self.hosts)))
        if self.schemes is not None:
            put("schemes", tuple(_choice("scheme", s.lower(), SCHEMES) for s in self.schemes))
        if self.methods is not None:
            put("methods", tuple(_choice("method", m.upper(), METHODS) for m in self.methods))
        if self.ports is not None:
            put("ports", tuple(_port(p) for p in _listed("ports", self.ports)))
        if self.max_response_bytes is not None and self.max_response_bytes < 0:
            raise ConfigError("egress max_response_bytes must be 0 or more")
        timeout = self.timeout_s
        if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
            raise ConfigError("egress timeout_s must be a positive number")

    @classmethod
    def from_text(
        cls,
        *,
        hosts: str = ANY,
        schemes: str = ANY,
        ports: str = ANY,
        methods: str = ANY,
        max_response_bytes: int | None = None,
        timeout_s: float | None = None,
    ) -> EgressRules:
        """Rules from comma-separated settings, where ``*`` (or nothing) leaves a field open."""
        return cls(
            hosts=_items(hosts),
            schemes=_items(schemes),
            ports=None if _items(ports) is None else [_port(p) for p in _items(ports) or ()],
            methods=_items(methods),
            max_response_bytes=max_response_bytes,
            timeout_s=timeout_s,
        )

    def refusal(self, scheme: str, host: str, port: int, method: str) -> tuple[str, str] | None:
        """``(field, what)`` of the first field that refuses the request, else None."""
        if self.schemes is not None and scheme not in self.schemes:
            return "schemes", f"scheme {scheme}"
        if self.hosts is not None and not any(host_matches(p, host) for p in self.hosts):
            return "hosts", f"host {host}"
        if self.ports is not None and port not in self.ports:
            return "ports", f"port {port}"
        if self.methods is not None and method not in self.methods:
            return "methods", f"method {method}"
        return None

    def listed(self, field: str) -> str:
        values = getattr(self, field)
        return ", ".join(str(v) for v in values) or "nothing"


@dataclass(frozen=True, slots=True)
class Layer:
    """A layer of a ``Gate``: its name in denials (``server``, ``agent``, ``tenant``...), who
    set it (shown in the message: ``agent 'web'``, ``SHIPYARD_EGRESS_*``) and its rules."""

    name: str
    source: str
    rules: EgressRules


@dataclass(frozen=True, slots=True)
class Limits:
    """The caps a gate puts on one request (None: no cap)."""

    max_response_bytes: int | None
    timeout_s: float | None


class Gate:
    """The layers a request must all pass, and the smallest caps they set."""

    __slots__ = ("layers", "limits")

    def __init__(self, layers: Iterable[Layer] = ()) -> None:
        self.layers = tuple(layers)
        sizes = [x.rules.max_response_bytes for x in self.layers]
        times = [x.rules.timeout_s for x in self.layers]
        self.limits = Limits(
            min((s for s in sizes if s is not None), default=None),
            min((t for t in times if t is not None), default=None),
        )

    def narrowed(self, *layers: Layer) -> Gate:
        return Gate((*self.layers, *layers))

    def rule_for(self, field: str) -> str:
        """The rule a cap denial names: the layer whose cap is the one in force."""
        value = getattr(self.limits, field)
        for layer in self.layers:
            if getattr(layer.rules, field) == value:
                return f"{layer.name}.{field}"
        return field

    def check(self, scheme: str, host: str, port: int, method: str) -> None:
        """Raise ``EgressDenied`` naming the first layer and field that refuse the request
        (rule ``url`` for a scheme no layer could allow: only http and https are spoken)."""
        if scheme not in SCHEMES:
            raise EgressDenied(
                f"scheme {scheme or '(none)'} is not allowed: only http and https (rule: url)",
                details={"rule": "url"},
            )
        host = normal_host(host)
        for layer in self.layers:
            refused = layer.rules.refusal(scheme, host, port, method)
            if refused is not None:
                field, what = refused
                rule = f"{layer.name}.{field}"
                raise EgressDenied(
                    f"{what} is not allowed by {layer.source} (rule: {rule}; allowed: "
                    f"{layer.rules.listed(field)})",
                    details={"rule": rule},
                )


def _items(text: str) -> list[str] | None:
    items = [item.strip() for item in text.split(",") if item.strip()]
    return None if not items or ANY in items else items


def _listed(name: str, values: Sequence[object]) -> Sequence[object]:
    if isinstance(values, str | bytes):
        raise ConfigError(f"egress {name} must be a list, not a string")
    return values


def _host_pattern(value: object) -> str:
    text = normal_host(str(value))
    label = text[2:] if text.startswith("*.") else text
    if text != ANY and (not label or not all(c.isalnum() or c in "-.:_" for c in label)):
        raise ConfigError(
            f"egress host {value!r} must be a name, '*.<domain>', an IP address or '*'"
        )
    return text


def _choice(kind: str, value: str, known: Sequence[str]) -> str:
    if value not in known:
        raise ConfigError(f"egress {kind} {value!r} is not one of {', '.join(known)}")
    return value


def _port(value: object) -> int:
    try:
        port = int(str(value))
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise ConfigError(f"egress port {value!r} is not a port number (1-65535)")
    return port


__all__ = ["ANY", "EgressRules", "Gate", "Layer", "Limits", "host_matches", "normal_host"]
