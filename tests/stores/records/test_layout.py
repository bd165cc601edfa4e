"""The record store's modules: it stores events and builds no spans (telemetry does)."""

from __future__ import annotations

import ast
from pathlib import Path

import shipyard.stores.records

RECORDS = Path(shipyard.stores.records.__file__).parent
SPAN_BUILDING = ("shipyard.telemetry.tracing", "opentelemetry")


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_no_record_store_module_builds_spans() -> None:
    offenders = {
        str(path.relative_to(RECORDS)): sorted(
            name for name in _imports(path) if name.startswith(SPAN_BUILDING)
        )
        for path in sorted(RECORDS.rglob("*.py"))
    }
    assert {path: names for path, names in offenders.items() if names} == {}
