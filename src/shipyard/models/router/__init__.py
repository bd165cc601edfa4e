"""The model router: ``router:<name>`` references that pick a candidate model per call
(docs/routing.md).

``Router(name, candidates, strategy)`` is registered with ``App(routers=[...])``; strategies are
``Rules``, ``Learned`` (the classifier shipped in this package) and ``Cascade``.
"""

from __future__ import annotations

from shipyard.errors import ConfigError
from shipyard.models.base import ChatModel
from shipyard.models.router.config import Candidate, Resilience
from shipyard.models.router.router import PREFIX, Router, RouterModel, check_router_refs
from shipyard.models.router.scope import RouteScope, RouteScopeHook, route_scope
from shipyard.models.router.strategies import (
    Cascade,
    Decision,
    Learned,
    RouteInput,
    Rule,
    Rules,
    Strategy,
    confidence_check,
    refusal_check,
    schema_check,
)

__all__ = [
    "PREFIX",
    "Candidate",
    "Cascade",
    "Decision",
    "Learned",
    "Resilience",
    "RouteInput",
    "RouteScope",
    "RouteScopeHook",
    "Router",
    "RouterModel",
    "Rule",
    "Rules",
    "Strategy",
    "check_router_refs",
    "confidence_check",
    "refusal_check",
    "route_scope",
    "schema_check",
]


def from_reference(spec: str, options: dict[str, str]) -> ChatModel:
    """``router:<name>`` names a router registered with the app; only the app's
    ``ModelResolver`` can resolve it (it knows the routers)."""
    raise ConfigError(
        f"no router named {spec!r}: register it with App(routers=[Router({spec!r}, ...)])"
    )
