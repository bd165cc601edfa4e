"""A router's configuration: its candidates (model references with prices, each served by one
or more deployments) and how it picks among them.

Prices come from ``shipyard.models.prices`` unless a candidate states its own. A candidate's
cost for comparisons is the price of a nominal call (``NOMINAL_IN`` tokens in, ``NOMINAL_OUT``
out): the strongest candidate is the most expensive one, unless ``strong`` names another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from shipyard.errors import ConfigError
from shipyard.models.prices import PRICES

NOMINAL_IN = 1000
NOMINAL_OUT = 250

Pick = Literal["least_busy", "lowest_latency"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One model a router may pick. ``deployments``: references serving the same model (keys,
    regions, servers), picked by ``pick``; without any, ``model`` itself is the deployment.
    ``price``: USD per 1M tokens (input, output), default the price table's."""

    model: str
    deployments: tuple[str, ...] = ()
    price: tuple[float, float] | None = None
    pick: Pick = "least_busy"

    @property
    def targets(self) -> tuple[str, ...]:
        return self.deployments or (self.model,)

    @property
    def unit_cost(self) -> float:
        """The cost of a nominal call, in USD (how candidates compare on price)."""
        per_in, per_out = self.price or PRICES.get(self.model.split("?", 1)[0], (0.0, 0.0))
        return (per_in * NOMINAL_IN + per_out * NOMINAL_OUT) / 1_000_000


def as_candidate(candidate: Candidate | str) -> Candidate:
    return candidate if isinstance(candidate, Candidate) else Candidate(candidate)


@dataclass(frozen=True, slots=True)
class Resilience:
    """How a router survives a failing deployment: ``retries`` more attempts on one deployment
    with exponential backoff from ``backoff_s`` (a ``Retry-After`` the server sends wins, up to
    ``max_wait_s``); a deployment that failed ``breaker_failures`` calls in a row is skipped for
    ``breaker_reset_s``; then the other deployments, then ``fallbacks`` in order."""

    retries: int = 1
    backoff_s: float = 0.2
    max_wait_s: float = 10.0
    breaker_failures: int = 3
    breaker_reset_s: float = 30.0


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """What ``Router`` describes, checked: candidates cheapest first."""

    name: str
    candidates: tuple[Candidate, ...]
    strong: Candidate
    fallbacks: tuple[str, ...] = ()
    resilience: Resilience = field(default_factory=Resilience)

    def candidate(self, model: str) -> Candidate:
        for c in self.candidates:
            if c.model == model:
                return c
        raise ConfigError(f"router {self.name}: {model!r} is not one of its candidates")

    def cheaper_than(self, model: str) -> tuple[Candidate, ...]:
        """The candidates strictly cheaper than ``model`` (the cheapest alone if none is)."""
        cost = self.candidate(model).unit_cost
        cheaper = tuple(c for c in self.candidates if c.unit_cost < cost)
        return cheaper or self.candidates[:1]


def check(
    name: str,
    candidates: Sequence[Candidate | str],
    strong: str | None,
    fallbacks: Sequence[str],
    resilience: Resilience,
) -> RouterConfig:
    """The configuration, or a ``ConfigError`` naming what is wrong."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"router name {name!r} must be letters, digits, '-' or '_'")
    found = [as_candidate(c) for c in candidates]
    if not found:
        raise ConfigError(f"router {name}: it needs at least one candidate")
    if len({c.model for c in found}) != len(found):
        raise ConfigError(f"router {name}: two candidates name the same model")
    if any(c.model.startswith("router:") for c in found):
        raise ConfigError(f"router {name}: a candidate cannot be another router")
    ordered = tuple(sorted(found, key=lambda c: c.unit_cost))
    config = RouterConfig(name, ordered, ordered[-1], tuple(fallbacks), resilience)
    if strong is not None:
        config = RouterConfig(name, ordered, config.candidate(strong), tuple(fallbacks), resilience)
    return config
