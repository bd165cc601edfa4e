"""Model options that are ``secret://`` references, read at each call so a rotation is used.

``openai:gpt-4.1-mini?api_key=secret://llm/openai#key`` — or ``OPENAI_API_KEY`` (the variable
``api_key_env`` names, or the provider's own) holding ``secret://llm/openai#key``.
:class:`SecretOptionsModel` stands where the provider's model would: before each call it reads
the options through the secret cache (``SHIPYARD_SECRETS_CACHE_S``), and when a value has
changed since the last call it builds the provider's model again with the new one. The
values live only in the provider's client: never in the model's name, an event or an error.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping

from shipyard.errors import ConfigError, ModelError, ShipyardError
from shipyard.models.base import ChatModel, ModelRequest, StreamItem
from shipyard.models.registry import build_model, parse_reference
from shipyard.stores.secrets.refs import SecretCache, has_refs

KEY_ENV: Mapping[str, str] = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
"""The variable each HTTP provider's SDK reads its key from when none is given."""


def secret_options(provider: str, options: Mapping[str, str]) -> dict[str, str]:
    """``options`` with a key that an environment variable names as a reference turned into
    an ``api_key`` option (the SDK would otherwise send the reference itself as the key)."""
    found = dict(options)
    if "api_key" in found:
        return found
    variable = found.get("api_key_env") or KEY_ENV.get(provider)
    value = os.environ.get(variable) if variable else None
    if value is not None and has_refs(value):
        found.pop("api_key_env", None)
        found["api_key"] = value
    return found


def needs_secrets(ref: str) -> bool:
    """Whether the model ``ref`` names reads an option from the secret store."""
    provider, _, options = parse_reference(ref)
    return any(has_refs(v) for v in secret_options(provider, options).values())


class SecretOptionsModel:
    """The provider's model for a reference whose options name secrets; rebuilt on rotation."""

    __slots__ = ("_built", "_options", "_provider", "_secrets", "_spec")

    def __init__(self, ref: str, secrets: SecretCache | None) -> None:
        if secrets is None:
            raise ConfigError(
                f"model {ref.partition('?')[0]}: its options name secrets, and "
                "no secret store is configured"
            )
        self._provider, self._spec, options = parse_reference(ref)
        self._options = secret_options(self._provider, options)
        self._secrets = secrets
        self._built: tuple[dict[str, str], ChatModel] | None = None

    def _secret_values(self) -> list[str]:
        """The values read from the store for the current client (not its plain options)."""
        built = self._built[0] if self._built else {}
        return [built[k] for k, v in self._options.items() if has_refs(v) and built.get(k)]

    @property
    def name(self) -> str:
        return f"{self._provider}:{self._spec}"

    async def _current(self) -> ChatModel:
        values = {k: await self._secrets.expand(v) for k, v in self._options.items()}
        if self._built is None or self._built[0] != values:
            # in-flight calls keep the client they started with; it closes when unreferenced
            self._built = (values, build_model(self._provider, self._spec, values))
        return self._built[1]

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        model = await self._current()
        try:
            async for item in model.stream(request):
                yield item
        except Exception as exc:
            text = exc.message if isinstance(exc, ShipyardError) else f"{type(exc).__name__}: {exc}"
            values = self._secret_values()
            if not any(v in text for v in values):
                raise
            for value in values:  # a server that quotes the key back: never in an error
                text = text.replace(value, "[secret]")
            raise ModelError(f"{self.name}: {text}") from None
