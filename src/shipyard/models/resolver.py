"""``ModelResolver``: model references to ``ChatModel``s, with the server's wrappers around them.

The composition root builds one per process and hands it down (services, invoker, each run's
context): nothing resolves a model through module state. A reference is resolved once and
kept (one client, one connection pool per model); the wrappers are composed once too, in the
order given (the first wraps the provider's model, the last is outermost).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from shipyard.errors import ConfigError
from shipyard.models.base import ChatModel
from shipyard.models.registry import create_model
from shipyard.models.secret_options import SecretOptionsModel, needs_secrets
from shipyard.stores.secrets.refs import SecretCache

if TYPE_CHECKING:
    from shipyard.models.router import Router

ModelWrapper = Callable[[ChatModel], ChatModel]
"""Builds a wrapper around a model: a ``WrapperModel`` subclass, or any such callable."""


class ModelResolver:
    """Resolves ``provider:model`` references (or ``ChatModel`` instances) for runs."""

    __slots__ = ("_cache", "_routers", "_secrets", "_wrappers")

    def __init__(
        self,
        wrappers: Sequence[ModelWrapper] = (),
        *,
        secrets: SecretCache | None = None,
        routers: Sequence[Router] = (),
    ) -> None:
        """``secrets``: reads the ``secret://`` options of model references, at each call.
        ``routers``: what ``router:<name>`` references name (the wrappers go around the
        router, not around each candidate it calls)."""
        self._wrappers = tuple(wrappers)
        self._secrets = secrets
        self._cache: dict[str | int, ChatModel] = {}
        self._routers = {r.name: r for r in routers}
        if len(self._routers) != len(routers):
            raise ConfigError("two routers share a name")

    @property
    def wrappers(self) -> tuple[ModelWrapper, ...]:
        return self._wrappers

    def resolve(self, ref: str | ChatModel) -> ChatModel:
        """The model for ``ref`` with the wrappers around it, created on first use."""
        key: str | int = ref if isinstance(ref, str) else id(ref)
        found = self._cache.get(key)
        if found is not None:
            return found
        model = self._create(ref) if isinstance(ref, str) else ref
        for wrap in self._wrappers:
            model = wrap(model)
        if isinstance(ref, str) or self._wrappers:  # a wrapped instance keeps ``ref`` alive
            self._cache[key] = model
        return model

    def _create(self, ref: str) -> ChatModel:
        if ref.startswith("router:") and ref[7:] in self._routers:
            return self._routers[ref[7:]].build(self._candidate)
        if needs_secrets(ref):
            return SecretOptionsModel(ref, self._secrets)
        return create_model(ref)

    def _candidate(self, ref: str) -> ChatModel:
        """A router's candidate deployment: created once, without the wrappers."""
        key = "candidate:" + ref
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._create(ref)
        return found
