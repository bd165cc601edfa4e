"""Detectors by name: what a policy's ``detector`` means.

The built-in detectors are found by import path the first time a policy names them, so the
pipeline does not depend on them being installed (or merged) until a policy uses one; a name
with nothing behind it is a ``ConfigError`` that names it. ``register`` adds or replaces one
(an application's own detector, a test's).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from shipyard.errors import ConfigError
from shipyard.guard.base import Detector

DetectorFactory = Callable[[], Detector]

BUILTIN: dict[str, str] = {
    "injection": "shipyard.guard.injection:InjectionDetector",
    "pii": "shipyard.guard.pii:PiiDetector",
    "secrets": "shipyard.guard.secrets_scan:SecretsDetector",
}
"""The detectors that ship with Shipyard: name -> ``module:class``."""

_factories: dict[str, DetectorFactory] = {}
_made: dict[str, Detector] = {}


def register(name: str, factory: DetectorFactory) -> None:
    """Make ``name`` mean ``factory()`` in policies (replaces a built-in of the same name)."""
    _factories[name] = factory
    _made.pop(name, None)


def detector(name: str) -> Detector:
    """The detector ``name`` (made once per process: detectors are stateless and may load a
    model)."""
    found = _made.get(name)
    if found is None:
        found = _made[name] = _factory(name)()
    return found


def _factory(name: str) -> DetectorFactory:
    factory = _factories.get(name)
    if factory is not None:
        return factory
    path = BUILTIN.get(name)
    if path is None:
        known = sorted({*BUILTIN, *_factories})
        raise ConfigError(f"guard detector {name!r} is unknown; known: {known}")
    module, _, attr = path.partition(":")
    try:
        made: DetectorFactory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"guard detector {name!r} is not available ({path}: {type(exc).__name__})"
        ) from None
    return made


__all__ = ["BUILTIN", "DetectorFactory", "detector", "register"]
