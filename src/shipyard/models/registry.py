"""Model references (``provider:model?option=value``) to ``ChatModel`` instances.

One provider module per prefix, imported only when a reference names it. Nothing is cached
here: the ``ModelResolver`` (``shipyard.models.resolver``) the composition root owns keeps one
instance per reference, so a server shares one client (and one connection pool) per model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from urllib.parse import parse_qsl

from shipyard.errors import ConfigError
from shipyard.models.base import ChatModel

Factory = Callable[[str, dict[str, str]], ChatModel]

PROVIDERS: dict[str, str] = {
    "openai": "shipyard.models.openai",
    "anthropic": "shipyard.models.anthropic",
    "local": "shipyard.models.local",
    "scripted": "shipyard.models.scripted",
    "router": "shipyard.models.router",
}


def parse_reference(ref: str) -> tuple[str, str, dict[str, str]]:
    """Split ``provider:model?k=v`` into its parts, rejecting what is not of that shape."""
    provider, sep, rest = ref.partition(":")
    if not sep or not provider or not rest:
        raise ConfigError(f"model reference {ref!r} must look like provider:model")
    if provider not in PROVIDERS:
        raise ConfigError(
            f"unknown model provider {provider!r} in {ref!r}; known: {', '.join(sorted(PROVIDERS))}"
        )
    spec, _, query = rest.partition("?")
    return provider, spec, dict(parse_qsl(query, keep_blank_values=True))


def create_model(ref: str) -> ChatModel:
    """A new model for a reference (``ModelResolver`` keeps the instances)."""
    return build_model(*parse_reference(ref))


def build_model(provider: str, spec: str, options: dict[str, str]) -> ChatModel:
    """A new model of a parsed reference (secret options already read)."""
    factory: Factory = importlib.import_module(PROVIDERS[provider]).from_reference
    return factory(spec, options)
