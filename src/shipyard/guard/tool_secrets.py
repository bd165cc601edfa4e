"""Credentials added to a tool's HTTP calls at the egress edge, so the tool never holds them.

A tool declares what it needs (``@tool(secrets=["github"])``); the operator says what each name
means (``SHIPYARD_TOOL_SECRETS``, :class:`SecretRule`): which secret, for which hosts, in which
header. While the tool runs, its calls through ``ctx.http`` pass :class:`SecretTransport`,
which adds the header to a copy of the request on its way out — the tool's own request object,
the response's ``request``, its arguments, its result and the model never see the value.

Only a tool that declared a name gets its rule, only for the rule's hosts and schemes (HTTPS
unless the rule says otherwise), and a redirect to another host is judged again (httpx drops
``Authorization`` across origins, and the next hop matches the rules afresh).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shipyard.stores.secrets.refs import SecretCache, parse_ref

MASK = "[secret]"


class Grant:
    """What one tool call may use (``names``), and the values added to its calls so far
    (``sent``), which are blanked from whatever the tool returns."""

    __slots__ = ("names", "sent")

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)
        self.sent: set[str] = set()

    def scrub(self, text: str) -> str:
        """``text`` without the values sent (a service that echoed one hands it back)."""
        for value in self.sent:
            text = text.replace(value, MASK)
        return text


_NOTHING = Grant(())
_granted: ContextVar[Grant] = ContextVar("shipyard_tool_secrets", default=_NOTHING)


class SecretRule(BaseModel):
    """One entry of ``SHIPYARD_TOOL_SECRETS``: what a declared secret name adds, and where."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="What tools declare: @tool(secrets=[name]).")
    secret: str = Field(description="The value, as a reference: secret://<path>#<key>.")
    hosts: tuple[str, ...] = Field(
        min_length=1, description="Host names it is sent to; '*.example.com' wildcards allowed."
    )
    header: str = Field("Authorization", min_length=1, description="The header to set.")
    template: str = Field(
        "Bearer {secret}", description="The header's value; {secret} is replaced by the secret."
    )
    schemes: tuple[str, ...] = Field(("https",), description="URL schemes it is sent over.")

    @field_validator("secret")
    @classmethod
    def _a_reference(cls, value: str) -> str:
        if parse_ref(value) is None:
            raise ValueError("must be a secret://<path>#<key> reference, not the value")
        return value

    @field_validator("template")
    @classmethod
    def _has_placeholder(cls, value: str) -> str:
        if "{secret}" not in value:
            raise ValueError("must contain {secret}")
        return value

    def applies_to(self, url: httpx.URL) -> bool:
        host = url.host.lower().rstrip(".")
        return url.scheme in self.schemes and any(
            fnmatch.fnmatchcase(host, pattern.lower()) for pattern in self.hosts
        )


@contextmanager
def granted_secrets(names: Iterable[str]) -> Iterator[Grant]:
    """While a tool runs: the secret names it declared (the calls it makes, and the tasks it
    starts, carry them)."""
    grant = Grant(names)
    token = _granted.set(grant)
    try:
        yield grant
    finally:
        _granted.reset(token)


class SecretTransport(httpx.AsyncBaseTransport):
    """Adds the granted rules' headers to a copy of each request, then sends it on ``inner``."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, rules: Sequence[SecretRule], secrets: SecretCache
    ) -> None:
        self._inner = inner
        self._rules = tuple(rules)
        self._secrets = secrets

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        grant = _granted.get()
        added: dict[str, str] = {}
        if grant.names:
            for rule in self._rules:
                if rule.name in grant.names and rule.applies_to(request.url):
                    value = await self._secrets.expand(rule.secret)
                    grant.sent.add(value)
                    added[rule.header] = rule.template.replace("{secret}", value)
        if not added:
            return await self._inner.handle_async_request(request)
        headers = request.headers.copy()
        headers.update(added)
        outgoing = httpx.Request(
            request.method,
            request.url,
            headers=headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return await self._inner.handle_async_request(outgoing)

    async def aclose(self) -> None:
        await self._inner.aclose()


def check_declared(declared: Mapping[str, Sequence[str]], rules: Sequence[SecretRule]) -> None:
    """Raise ``ValueError`` naming each tool whose declared secret has no rule (a typo would
    otherwise send the call without its credential)."""
    known = {rule.name for rule in rules}
    missing = [
        f"tool {tool!r} declares secret {name!r}"
        for tool, names in sorted(declared.items())
        for name in names
        if name not in known
    ]
    if missing:
        raise ValueError(
            "; ".join(missing) + f" with no rule in SHIPYARD_TOOL_SECRETS (rules: {sorted(known)})"
        )
