"""``Meters``: spend against a limit, with holds taken before the spending — budgets.

A meter counts what was ``spent`` under its key and what holders (runs) ``hold`` of it: room
set aside before they spend, so that concurrent holders can never together pass the limit.
``hold`` takes room on several meters all or nothing, in one atomic step (a Lua script on
Redis, a transaction on SQLite); ``charge`` adds real spending (always: it happened) and uses
the holder's hold up first; ``release`` gives the rest of a hold back. A hold expires by
itself ``ttl_s`` after it was last taken, so a holder that crashed frees its room. A meter's
own spending lives ``keep_s`` (its period, and a margin to read it).

Amounts are whole numbers (nano-dollars, tokens): the same sums on every backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Meter:
    """A meter's ``key``, its ``limit`` (the same unit as the amounts), and how long its
    spending is kept after the last change (``keep_s``: to the end of its period, and more)."""

    key: str
    limit: int
    keep_s: float


@dataclass(frozen=True, slots=True)
class Level:
    """A meter as read: what was spent and what live holds set aside."""

    spent: int
    held: int


class Meters(Protocol):
    async def hold(
        self, meters: Sequence[Meter], holder: str, amounts: Sequence[int], *, ttl_s: float
    ) -> int | None:
        """Add ``amounts[i]`` to ``holder``'s hold on ``meters[i]`` if every meter has the room
        (``spent + held + amount <= limit``), else change nothing; None when held, else the
        index of the first meter without room. The holder's holds live ``ttl_s`` from now."""
        ...

    async def charge(self, meters: Sequence[Meter], holder: str, amounts: Sequence[int]) -> None:
        """Count ``amounts`` as spent on every meter (past the limit too), taking them off
        ``holder``'s hold first."""
        ...

    async def release(self, keys: Sequence[str], holder: str) -> None:
        """Give back what is left of ``holder``'s holds on these meters."""
        ...

    async def levels(self, keys: Sequence[str]) -> list[Level]:
        """Each meter's spending and live holds (zeros for a meter never used)."""
        ...


def check_meters(meters: Sequence[Meter], amounts: Sequence[int]) -> None:
    """One amount ≥ 0 per meter, each meter with a limit ≥ 0 and a positive ``keep_s``."""
    if len(meters) != len(amounts):
        raise ValueError("one amount per meter")
    for meter, amount in zip(meters, amounts, strict=True):
        if amount < 0 or meter.limit < 0:
            raise ValueError(f"amounts and limits are at least 0: {meter!r}, {amount}")
        if not (meter.keep_s > 0 and math.isfinite(meter.keep_s)):
            raise ValueError(f"a meter is kept a positive time: {meter!r}")
