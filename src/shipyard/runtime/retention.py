"""Deleting record rows past their retention (a worker's: stopped workers, settled webhooks)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import structlog

log = structlog.get_logger(__name__)

PRUNE_EVERY_S = 60.0
"""How often a worker process deletes the record rows past their retention, at most."""


class Retention:
    """Deletes rows past their retention through ``prune(cutoff)``: the first time it is asked,
    then at most every ``every_s``; a store that is down only delays it."""

    def __init__(
        self,
        rows: str,
        prune: Callable[[datetime], Awaitable[int]],
        *,
        keep_s: float,
        every_s: float,
    ) -> None:
        self._rows = rows
        self._prune = prune
        self._keep_s = keep_s
        self._every_s = every_s
        self._at: float | None = None

    async def maybe(self) -> None:
        now = time.monotonic()
        if self._at is not None and now - self._at < self._every_s:
            return
        self._at = now
        cutoff = datetime.now(UTC) - timedelta(seconds=self._keep_s)
        try:
            deleted = await self._prune(cutoff)
        except Exception as exc:
            log.warning("rows past their retention not pruned", rows=self._rows, error=str(exc))
            return
        if deleted:
            log.debug("rows past their retention pruned", rows=self._rows, deleted=deleted)
