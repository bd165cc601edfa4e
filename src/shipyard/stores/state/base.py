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
  published while it is subscribed and nothing else.

Backends: ``sqlite.py`` (embedded: one process, or a few sharing its file) and ``redis.py``.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

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


class StateStore(Values, Lists, Atomic, Leases, LeaseQueues, Channels, Protocol):
    async def ping(self) -> None:
        """Raise ``StoreError`` unless the store answers."""
        ...

    async def close(self) -> None: ...


def ttl_ms(ttl_s: float) -> int:
    """A TTL in whole milliseconds, at least 1; a TTL must be positive and finite."""
    if not (ttl_s > 0 and math.isfinite(ttl_s)):
        raise ValueError(f"a TTL must be a positive number of seconds, not {ttl_s!r}")
    return max(1, round(ttl_s * 1000))


def check_items(items: Sequence[bytes]) -> None:
    """Items are bytes; a ``str`` passed by mistake would otherwise be stored character-wise or
    encoded differently per backend."""
    for item in items:
        if not isinstance(item, bytes):
            raise TypeError(f"state items are bytes, not {type(item).__name__}")
