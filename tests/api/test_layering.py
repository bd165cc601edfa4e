"""The API layer imports neither the package root nor the composition root."""

from __future__ import annotations

import ast
from pathlib import Path

import shipyard
import shipyard._version

API = Path(shipyard.__file__).parent / "api"
FORBIDDEN = {"shipyard", "shipyard.app"}


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
