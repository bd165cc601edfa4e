"""Scripted candidates for router tests: each a ``scripted:<file>`` reference with a price."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from shipyard.models.router import Candidate

Script = Callable[[str, Sequence[Any], tuple[float, float]], Candidate]


@pytest.fixture
def scripted(tmp_path: Path) -> Script:
    """``scripted("strong", ["answer", ...], (in, out))``: a candidate that plays those steps."""

    def make(name: str, steps: Sequence[Any], price: tuple[float, float]) -> Candidate:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps([{"text": s} if isinstance(s, str) else s for s in steps]))
        return Candidate(f"scripted:{path}", price=price)

    return make
