"""The state store: temporary state that every replica shares — session history, locks, events.

Every key has a time to live; nothing lives forever. A key holds either a value or a list, as on
Redis: using one as the other raises ``StoreError``. Six narrow protocols, which one backend
implements together as ``StateStore``:

- ``Values`` — bytes under a key, with a TTL that ``expire`` renews (sliding expiry);
- ``Lists`` — append-only lists of bytes (a session's history); an append renews the TTL;
- ``Atomic`` — compare-and-set, and ``append_if``: a turn's history append, conditional on the
  session's version and bumping it, all or nothing;
- ``Leases`` — one holder at a time per name, with a fencing token that grows on every
  acquisition, so a holder that lost its lease (a pause longer than the TTL) can be told apart;
- ``LeaseQueues`` — a line of waiters in front of a lease, served in the order they joined: a
  waiter holds a ticket that it refreshes while it waits, and a ticket not refreshed within
  its TTL (a waiter that crashed) drops out, so nobody blocks the line for long;
- ``Channels`` — publish/subscribe of live events, at most once: a subscriber gets what is
  published while it is subscribed and nothing else;
- ``Rates`` — rate limits (requests, model tokens per period) as GCRA buckets, several taken
  all or nothing in one round trip;
- ``Slots`` — a capped set of holders per name (runs in flight), each with its own expiry, so
  a holder that crashed frees its slot;
- ``Meters`` — spending against a limit, with room held before it is spent (budgets;
  ``meters.py``).

Backends: ``sqlite.py`` (embedded: one process, or a few sharing its file) and ``redis.py``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from shipyard.stores.state.meters import Meters

LEASE_SEQUENCE_TTL_S = 30 * 24 * 3600.0
"""How long a lease name's token counter outlives its last acquisition. A name unused for longer
starts again at 1: a fenced resource must not keep tokens longer than this."""
QUEUE_SEQUENCE_TTL_S = 24 * 3600.0
"""How long a lease queue's ticket counter outlives the last ticket it handed out; no waiter may
wait longer than this (its ticket would no longer be in order)."""


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease held by ``owner``; ``token`` is its fencing token, larger than any earlier one of
    the same ``name``. ``expires_at`` is a Unix time measured on this machine just before the
    request, so never later than the store's own expiry."""

    name: str
    owner: str
    token: int
    expires_at: float


class Values(Protocol):
    async def get(self, key: str) -> bytes | None:
        """The value, or None if the key is absent or expired."""
        ...

    async def set(self, key: str, value: bytes, *, ttl_s: float) -> None:
        """Store ``value`` (replacing a value or a list) for ``ttl_s`` seconds."""
        ...

    async def delete(self, *keys: str) -> int:
        """Delete values or lists; the number of keys that existed."""
        ...

    async def expire(self, key: str, ttl_s: float) -> bool:
        """Renew a value's or a list's TTL to ``ttl_s`` from now; False if the key is absent."""
        ...

    async def ttl(self, key: str) -> float | None:
        """Seconds the key has left to live; None if it is absent."""
        ...


class Lists(Protocol):
    async def append(self, key: str, *items: bytes, ttl_s: float) -> int:
        """Append ``items`` (creating the list) and renew its TTL; the new length."""
        ...

    async def range(self, key: str, start: int = 0, end: int = -1) -> list[bytes]:
        """Items ``start`` to ``end`` *inclusive*; negative indexes count from the end, as in
        Redis ``LRANGE`` (the default is the whole list); ``[]`` if the key is absent."""
        ...

    async def length(self, key: str) -> int:
        """Number of items; 0 if the key is absent."""
        ...


class Atomic(Protocol):
    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes, *, ttl_s: float
    ) -> bool:
        """Set ``key`` to ``new`` only if it holds ``expected`` (None: only if it is absent)."""
        ...

    async def append_if(
        self,
        list_key: str,
        items: Sequence[bytes],
        *,
        guard_key: str,
        expected: bytes | None,
        new: bytes,
        ttl_s: float,
    ) -> bool:
        """If ``guard_key`` holds ``expected`` (None: is absent), append ``items`` to ``list_key``
        and set ``guard_key`` to ``new``, both with ``ttl_s``; all of it or none of it.

        On Redis Cluster both keys must hash to one slot: give them the same ``{hash tag}``.
        """
        ...


class Leases(Protocol):
    async def acquire_lease(self, name: str, owner: str, *, ttl_s: float) -> Lease | None:
        """Take the lease if nobody holds it (an expired lease is free) and nobody waits in its
        queue (``LeaseQueues``: a newcomer does not pass the waiters); None otherwise — held by
        anyone, ``owner`` included: a holder renews, it does not acquire again."""
        ...

    async def renew_lease(self, lease: Lease, *, ttl_s: float) -> Lease | None:
        """Extend a lease still held to ``ttl_s`` from now; the renewed lease (same token), or
        None if it was lost (expired, released, or taken by someone else)."""
        ...

    async def release_lease(self, lease: Lease) -> bool:
        """Give the lease up; False if it was no longer held by this lease's owner and token."""
        ...

    async def lease_is_current(self, lease: Lease) -> bool:
        """Whether ``lease`` (owner and token) still holds its name."""
        ...


class LeaseQueues(Protocol):
    """Waiters for a lease, served first come, first served.

    ``join_queue`` hands out tickets in increasing order (per name). The lease goes only to the
    lowest live ticket, through ``acquire_lease_in_turn``, which also refreshes the caller's
    ticket when it is not its turn yet. A ticket expires ``ticket_ttl_s`` after it was last
    refreshed; an expired ticket no longer holds anyone back. A waiter that gives up leaves
    with ``leave_queue``.
    """

    async def join_queue(self, name: str, *, ticket_ttl_s: float) -> int:
        """A new ticket in ``name``'s queue, after every ticket handed out before it."""
        ...

    async def acquire_lease_in_turn(
        self, name: str, owner: str, ticket: int, *, ttl_s: float, ticket_ttl_s: float
    ) -> Lease | None:
        """Take the lease if it is free and ``ticket`` is the lowest live ticket of the queue
        (the ticket then leaves the queue); otherwise refresh the ticket — putting it back in
        its place if it had expired — and return None."""
        ...

    async def leave_queue(self, name: str, ticket: int) -> bool:
        """Drop ``ticket`` from the queue; False if it was not (or no longer) in it."""
        ...


class Channels(Protocol):
    async def publish(self, channel: str, message: bytes) -> int:
        """Send ``message`` to the channel's current subscribers; how many there were (on Redis
        Cluster, on the node that received it)."""
        ...

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """``async with store.subscribe(ch) as messages: async for m in messages: ...``

        The subscription is in place when the ``async with`` body starts; leaving it
        unsubscribes. Iteration ends when the store closes and raises ``StoreError`` if the
        subscription is lost (connection gone for good, or a subscriber too slow to keep up).
        """
        ...


@dataclass(frozen=True, slots=True)
class Rate:
    """A rate limit: at most ``limit`` units per ``period_s``, kept under ``key``. A full
    ``limit`` may be spent at once (a burst); it then comes back evenly over the period."""

    key: str
    limit: int
    period_s: float


@dataclass(frozen=True, slots=True)
class Quota:
    """What a ``take`` found, for the tightest of its rates: its ``limit``, the units left
    (``remaining``), the seconds until the whole limit is back (``reset_s``), and, refused,
    the seconds until the cost would fit (``retry_after_s``; 0 when allowed); ``key`` names
    that rate."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: float
    retry_after_s: float = 0.0
    key: str = ""


class Rates(Protocol):
    async def take(self, rates: Sequence[Rate], cost: int = 1, *, force: bool = False) -> Quota:
        """Spend ``cost`` units of every rate if each has them, else none (all or nothing).

        GCRA: each key holds one time, the theoretical arrival time ``tat``; a cost moves it
        ``cost * period_s / limit`` later, and it may run at most ``period_s`` ahead of now.
        ``force`` spends even past the limit (a debt the rate pays back before it allows
        again: model tokens, counted once used). ``cost`` 0 changes nothing and asks whether
        one unit is left. A key lives only until its rate is whole again.
        """
        ...


class Slots(Protocol):
    async def acquire_slot(self, name: str, holder: str, *, limit: int, ttl_s: float) -> int:
        """Take one of ``name``'s ``limit`` slots for ``holder`` for ``ttl_s`` (a holder that
        already has one renews it); the slots now in use, or 0 if all were taken."""
        ...

    async def release_slot(self, name: str, holder: str) -> bool:
        """Give ``holder``'s slot back; False if it held none (or it had expired)."""
        ...


class StateStore(
    Values, Lists, Atomic, Leases, LeaseQueues, Channels, Rates, Slots, Meters, Protocol
):
    async def ping(self) -> None:
        """Raise ``StoreError`` unless the store answers."""
        ...

    async def close(self) -> None: ...


def ttl_ms(ttl_s: float) -> int:
    """A TTL in whole milliseconds, at least 1; a TTL must be positive and finite."""
    if not (ttl_s > 0 and math.isfinite(ttl_s)):
        raise ValueError(f"a TTL must be a positive number of seconds, not {ttl_s!r}")
    return max(1, round(ttl_s * 1000))


def gcra(
    tats: Sequence[float | None], rates: Sequence[Rate], cost: int, force: bool, now: float
) -> tuple[Quota, list[float]]:
    """The pure step of ``Rates.take``: each rate's stored ``tat`` (None: absent) at ``now``
    → the quota and the new tats to store (none when refused or ``cost`` is 0). Seconds
    throughout; the Redis script does the same sums in milliseconds on the server's clock."""
    quotas: list[Quota] = []
    new: list[float] = []
    for tat, rate in zip(tats, rates, strict=True):
        step = rate.period_s / rate.limit
        base = now if tat is None or tat < now else tat
        ahead = base + max(cost, 1) * step - now  # how far ahead the tat would run
        fits = ahead <= rate.period_s + 1e-9
        after = base + cost * step
        new.append(after)
        spent = (after if fits or force else base) - now
        quotas.append(
            Quota(
                allowed=fits,
                limit=rate.limit,
                remaining=max(0, int((rate.period_s - spent) / step + 1e-9)),
                reset_s=max(0.0, spent),
                retry_after_s=0.0 if fits else ahead - rate.period_s,
                key=rate.key,
            )
        )
    allowed = all(q.allowed for q in quotas)
    keep = force or (allowed and cost > 0)
    return tightest(quotas, force=force), new if keep else []


def tightest(quotas: Sequence[Quota], *, force: bool) -> Quota:
    """The quota to report of several taken together: a refusal with the longest wait, else
    the one with the fewest units left; ``force`` makes it allowed whatever it found."""
    refused = [q for q in quotas if not q.allowed]
    if refused and not force:
        return max(refused, key=lambda q: q.retry_after_s)
    least = min(quotas, key=lambda q: q.remaining)
    return least if least.allowed else dataclasses.replace(least, allowed=True, retry_after_s=0.0)


def check_take(rates: Sequence[Rate], cost: int) -> None:
    """A take names at least one rate, each with a positive limit and period, and a cost ≥ 0."""
    if not rates:
        raise ValueError("take needs at least one rate")
    if cost < 0:
        raise ValueError(f"a cost is at least 0, not {cost}")
    for rate in rates:
        if rate.limit < 1 or not (rate.period_s > 0 and math.isfinite(rate.period_s)):
            raise ValueError(f"a rate needs a limit ≥ 1 and a positive period: {rate!r}")


def check_items(items: Sequence[bytes]) -> None:
    """Items are bytes; a ``str`` passed by mistake would otherwise be stored character-wise or
    encoded differently per backend."""
    for item in items:
        if not isinstance(item, bytes):
            raise TypeError(f"state items are bytes, not {type(item).__name__}")
