"""What a single read (``GET /v1/runs/{id}``, ``/v1/tasks/{id}``, ``/v1/sessions/{id}``) answers
for a row an older version stored and that no JSON answer can carry as it is: the row, with those
parts replaced (``shipyard.stores.storable.servable``: a lone surrogate by U+FFFD, nesting past
the limit by a note saying so), and a warning in the log — never a 500. The listings skip such
rows instead (``unreadable record skipped``)."""

from __future__ import annotations

from typing import TypeVar

import structlog
from pydantic import BaseModel

from shipyard.stores.storable import servable

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=BaseModel)


def served(answer: M, *, row: str) -> M:
    """``answer`` as it can be served; ``row`` names the record in the log if it had to change."""
    clean: M = servable(answer)
    if clean is not answer:
        log.warning("unservable record served with parts replaced", row=row)
    return clean
