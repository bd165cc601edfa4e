"""The import graph follows the layers of DESIGN.md: dependencies only point down.

surface ``api`` -> ``runtime`` -> ``agents`` -> ``models`` -> ``guard`` -> ``stores`` ->
``telemetry``. A package may import itself and the packages below it, and the shared modules
every layer uses (``errors``, ``_version``); never a package above it nor a root module
(``config``, ``app``, ``cli``, ``testing``, the package itself), which may import anything; nor
may they import ``serverless``, the Lambda entry points, or ``compose``, the composition root
(roots like ``cli``)."""

from __future__ import annotations

import ast
from pathlib import Path

import shipyard
import shipyard._version

SRC = Path(shipyard.__file__).parent
API = SRC / "api"
FORBIDDEN = {"shipyard", "shipyard.app"}
LAYERS = ("api", "runtime", "agents", "models", "guard", "stores", "telemetry")
SHARED = {"errors", "_version"}
ROOT_PACKAGES = {"serverless", "compose"}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_api_modules_do_not_import_the_package_or_composition_root() -> None:
    offenders = {
        str(path.relative_to(API)): sorted(_imports(path) & FORBIDDEN)
        for path in sorted(API.rglob("*.py"))
        if _imports(path) & FORBIDDEN
    }
    assert offenders == {}


def test_the_version_has_one_home() -> None:
    assert shipyard.__version__ is shipyard._version.__version__


def _layer_of(module: str) -> str | None:
    """The top-level part of a ``shipyard.*`` module name (``None`` outside shipyard)."""
    parts = module.split(".")
    if parts[0] != "shipyard":
        return None
    return parts[1] if len(parts) > 1 else "shipyard"


def test_every_package_imports_only_its_own_layer_and_those_below() -> None:
    packages = [p for p in SRC.iterdir() if p.is_dir() and not p.name.startswith("_")]
    layered = [p.name for p in packages if p.name not in {"__pycache__", *ROOT_PACKAGES}]
    assert sorted(layered) == sorted(LAYERS)
    offenders: dict[str, list[str]] = {}
    for rank, layer in enumerate(LAYERS):
        allowed = {*LAYERS[rank:], *SHARED}
        for path in sorted((SRC / layer).rglob("*.py")):
            wrong = sorted(m for m in _imports(path) if _layer_of(m) not in (None, *allowed))
            if wrong:
                offenders[str(path.relative_to(SRC))] = wrong
    assert offenders == {}


def test_the_layer_check_catches_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "up.py"
    module.write_text("from shipyard.runtime.invoke import Invoker\nimport shipyard.config\n")
    found = {_layer_of(m) for m in _imports(module)}
    assert found == {"runtime", "config"}
    assert not found <= {*LAYERS[LAYERS.index("models") :], *SHARED}


def test_routes_reach_services_through_the_typed_accessor() -> None:
    """Only ``api/state.py`` reads ``app.state`` (``app.py`` stores it): routes use its typed
    ``services()`` / ``keys()``, never an untyped ``request.app.state`` lookup."""
    offenders = [
        str(path.relative_to(API))
        for path in sorted(API.rglob("*.py"))
        if "app.state" in path.read_text() and path.name not in {"state.py", "app.py"}
    ]
    assert offenders == []


SPAN_BUILDING = ("shipyard.telemetry.tracing", "opentelemetry")


def test_no_record_store_module_builds_spans() -> None:
    """The record store stores events; spans are built from them in telemetry."""
    records = SRC / "stores" / "records"
    offenders = {
        str(path.relative_to(records)): sorted(
            name for name in _imports(path) if name.startswith(SPAN_BUILDING)
        )
        for path in sorted(records.rglob("*.py"))
    }
    assert {path: names for path, names in offenders.items() if names} == {}
