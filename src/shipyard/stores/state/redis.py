"""``RedisStateStore``: the state store on Redis (``redis.asyncio``), shared by every replica.

Keys live under one prefix (``shipyard:`` by default, see ``_keys``): values and lists under
``{prefix}k:``, leases under ``{prefix}lease:`` with their token counters under
``{prefix}lease-seq:``, their queues under ``{prefix}lease-queue:`` with the ticket counters
under ``{prefix}lease-queue-seq:``, rates under ``{prefix}rate:``, slots under ``{prefix}slots:``,
budget meters under ``{prefix}meter:`` and ``{prefix}meter-holders:`` (``redis_meters``),
channels under ``{prefix}ch:``. Multi-key steps are Lua scripts (``redis_scripts``), atomic on
the server, registered once and reloaded by redis-py after a restart (``NOSCRIPT``).

Reconnection: every pool checks a connection before lending it and reconnects one that the
server closed, so the same store works again once Redis is back. Two pools, because a command
whose reply was lost (a timeout) may still have run: reads and idempotent writes go through a
pool that retries on connection errors and timeouts, with exponential backoff; writes that
must not run twice (appends, compare-and-set, lease acquisition, publish...) go through a pool
that never resends — a lost reply surfaces as ``StoreError`` rather than as a duplicated
history item or a false "conflict". Both wait for a free connection rather than fail a burst.
Subscriptions hold their connection for as long as they last, so they come from a third pool
and cannot starve commands.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, cast

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shipyard.errors import ConfigError, StoreError
from shipyard.stores.state import redis_meters
from shipyard.stores.state import redis_scripts as lua
from shipyard.stores.state.base import (
    LEASE_SEQUENCE_TTL_S,
    QUEUE_SEQUENCE_TTL_S,
    Lease,
    Quota,
    Rate,
    check_items,
    check_take,
    tightest,
    ttl_ms,
)
from shipyard.stores.state.meters import Level, Meter, check_meters
from shipyard.stores.state.redis_subscription import RedisSubscription

__all__ = ["RedisStateStore"]

_SCHEMES = ("redis", "rediss", "unix")
_Arg = bytes | str | int
SOCKET_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0
HEALTH_CHECK_INTERVAL_S = 10
RETRIES = 5  # waits 0.05, 0.1, 0.2, 0.4, 0.8 s: rides out a ~1.5 s blip (a restart, a fail-over)


class _Keys:
    """Where each kind of thing lives in the Redis keyspace, under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def key(self, key: str) -> str:
        return f"{self.prefix}k:{key}"

    def lease(self, name: str) -> str:
        return f"{self.prefix}lease:{name}"

    def lease_seq(self, name: str) -> str:
        return f"{self.prefix}lease-seq:{name}"

    def queue(self, name: str) -> str:
        return f"{self.prefix}lease-queue:{name}"

    def queue_seq(self, name: str) -> str:
        return f"{self.prefix}lease-queue-seq:{name}"

    def rate(self, key: str) -> str:
        return f"{self.prefix}rate:{key}"

    def slots(self, name: str) -> str:
        return f"{self.prefix}slots:{name}"

    def meter(self, key: str) -> str:
        return f"{self.prefix}meter:{key}"

    def meter_holders(self, key: str) -> str:
        return f"{self.prefix}meter-holders:{key}"

    def channel(self, channel: str) -> str:
        return f"{self.prefix}ch:{channel}"


class RedisStateStore:
    """The ``StateStore`` on Redis; build it with ``from_url``."""

    def __init__(
        self,
        retrying: aioredis.Redis,
        once: aioredis.Redis,
        subscriber: aioredis.Redis,
        *,
        prefix: str,
        label: str,
    ) -> None:
        self._redis = retrying
        self._once = once
        self._subscriber = subscriber
        self._keys = _Keys(prefix)
        self._label = label
        self._closed = False
        self._subscriptions: set[RedisSubscription] = set()
        self._append = once.register_script(lua.APPEND)
        self._cas = once.register_script(lua.COMPARE_AND_SET)
        self._append_if = once.register_script(lua.APPEND_IF)
        self._acquire = once.register_script(lua.ACQUIRE_LEASE)
        self._renew = retrying.register_script(lua.RENEW_LEASE)
        self._release = once.register_script(lua.RELEASE_LEASE)
        self._join = once.register_script(lua.JOIN_QUEUE)
        self._acquire_in_turn = once.register_script(lua.ACQUIRE_LEASE_IN_TURN)
        self._leave = retrying.register_script(lua.LEAVE_QUEUE)
        self._take = once.register_script(lua.TAKE)
        self._peek = retrying.register_script(lua.TAKE)  # cost 0 writes nothing: safe to resend
        self._acquire_slot = retrying.register_script(lua.ACQUIRE_SLOT)  # same holder: renews
        self._release_slot = retrying.register_script(lua.RELEASE_SLOT)
        self._hold = once.register_script(redis_meters.HOLD)
        self._charge = once.register_script(redis_meters.CHARGE)
        self._release_hold = retrying.register_script(redis_meters.RELEASE)
        self._levels = retrying.register_script(redis_meters.LEVELS)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "shipyard:",
        socket_timeout_s: float = SOCKET_TIMEOUT_S,
        max_connections: int = 50,
        max_subscriptions: int = 1_000,
    ) -> RedisStateStore:
        """``redis://[user:password@]host:port/db``, ``rediss://`` (TLS) or ``unix://path``.

        ``max_connections`` is per command pool (there are two, see the module docstring); a
        command waits up to ``socket_timeout_s`` for a free connection. Each subscription
        holds a connection of a third pool, of at most ``max_subscriptions``."""
        scheme = url.partition("://")[0]
        if scheme not in _SCHEMES:
            supported = ", ".join(f"{s}://" for s in _SCHEMES)
            raise ConfigError(f"unsupported state store URL scheme {scheme!r}: {supported}")
        options: dict[str, Any] = {
            "socket_timeout": socket_timeout_s,
            "socket_connect_timeout": min(CONNECT_TIMEOUT_S, socket_timeout_s),
            "health_check_interval": HEALTH_CHECK_INTERVAL_S,
            "max_connections": max_connections,
            "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        }
        retry = Retry(ExponentialBackoff(cap=1.0, base=0.025), RETRIES)
        blocking = aioredis.BlockingConnectionPool
        try:
            retrying = blocking.from_url(url, retry=retry, timeout=socket_timeout_s, **options)
            once = blocking.from_url(
                url, retry=Retry(NoBackoff(), 0), timeout=socket_timeout_s, **options
            )
            subscriber = aioredis.ConnectionPool.from_url(
                url, retry=retry, **(options | {"max_connections": max_subscriptions})
            )
        except ValueError as e:
            raise ConfigError(f"invalid Redis URL: {e}") from e
        return cls(
            aioredis.Redis.from_pool(retrying),
            aioredis.Redis.from_pool(once),
            aioredis.Redis.from_pool(subscriber),
            prefix=prefix,
            label=_safe_label(retrying),
        )

    @property
    def prefix(self) -> str:
        """The prefix of every key and channel of this store."""
        return self._keys.prefix

    # -- lifecycle ------------------------------------------------------------------------------

    async def ping(self) -> None:
        with self._translate("ping"):
            await self._redis.ping()

    async def close(self) -> None:
        """End every subscription and close both pools; idempotent."""
        if self._closed:
            return
        self._closed = True
        for subscription in list(self._subscriptions):
            await subscription.close()
        await self._redis.aclose()
        await self._once.aclose()
        await self._subscriber.aclose()

    # -- values ---------------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        with self._translate("get"):
            return cast(bytes | None, await self._redis.get(self._keys.key(key)))

    async def set(self, key: str, value: bytes, *, ttl_s: float) -> None:
        check_items([value])
        with self._translate("set"):
            await self._redis.set(self._keys.key(key), value, px=ttl_ms(ttl_s))

    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        with self._translate("delete"):
            return int(await self._once.delete(*(self._keys.key(k) for k in keys)))

    async def expire(self, key: str, ttl_s: float) -> bool:
        with self._translate("expire"):
            return bool(await self._redis.pexpire(self._keys.key(key), ttl_ms(ttl_s)))

    async def ttl(self, key: str) -> float | None:
        with self._translate("ttl"):
            ms = int(await self._redis.pttl(self._keys.key(key)))
        if ms == -2:
            return None
        return float("inf") if ms == -1 else ms / 1000

    # -- lists ----------------------------------------------------------------------------------

    async def append(self, key: str, *items: bytes, ttl_s: float) -> int:
        check_items(items)
        args: list[_Arg] = [ttl_ms(ttl_s), *items]
        with self._translate("append"):
            return int(await self._append(keys=[self._keys.key(key)], args=args))

    async def range(self, key: str, start: int = 0, end: int = -1) -> list[bytes]:
        with self._translate("range"):
            return cast(list[bytes], await self._redis.lrange(self._keys.key(key), start, end))

    async def length(self, key: str) -> int:
        with self._translate("length"):
            return int(await self._redis.llen(self._keys.key(key)))

    # -- atomic ---------------------------------------------------------------------------------

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes, *, ttl_s: float
    ) -> bool:
        check_items([new])
        args: list[_Arg] = [*_expected(expected), new, ttl_ms(ttl_s)]
        with self._translate("compare_and_set"):
            return bool(await self._cas(keys=[self._keys.key(key)], args=args))

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
        check_items([*items, new])
        keys = [self._keys.key(list_key), self._keys.key(guard_key)]
        args: list[_Arg] = [*_expected(expected), new, ttl_ms(ttl_s), *items]
        with self._translate("append_if"):
            return bool(await self._append_if(keys=keys, args=args))

    # -- leases ---------------------------------------------------------------------------------

    async def acquire_lease(self, name: str, owner: str, *, ttl_s: float) -> Lease | None:
        keys = [self._keys.lease(name), self._keys.lease_seq(name), self._keys.queue(name)]
        args: list[_Arg] = [owner, ttl_ms(ttl_s), ttl_ms(LEASE_SEQUENCE_TTL_S)]
        expires_at = time.time() + ttl_s
        with self._translate("acquire_lease"):
            token = await self._acquire(keys=keys, args=args)
        return None if token is None else Lease(name, owner, int(token), expires_at)

    async def renew_lease(self, lease: Lease, *, ttl_s: float) -> Lease | None:
        keys = [self._keys.lease(lease.name), self._keys.lease_seq(lease.name)]
        args: list[_Arg] = [_holder(lease), ttl_ms(ttl_s), ttl_ms(LEASE_SEQUENCE_TTL_S)]
        expires_at = time.time() + ttl_s
        with self._translate("renew_lease"):
            renewed = await self._renew(keys=keys, args=args)
        return Lease(lease.name, lease.owner, lease.token, expires_at) if renewed else None

    async def release_lease(self, lease: Lease) -> bool:
        with self._translate("release_lease"):
            released = await self._release(
                keys=[self._keys.lease(lease.name)], args=[_holder(lease)]
            )
        return bool(released)

    async def lease_is_current(self, lease: Lease) -> bool:
        with self._translate("lease_is_current"):
            holder = await self._redis.get(self._keys.lease(lease.name))
        return holder == _holder(lease).encode()

    # -- lease queues ---------------------------------------------------------------------------

    async def join_queue(self, name: str, *, ticket_ttl_s: float) -> int:
        keys = [self._keys.queue(name), self._keys.queue_seq(name)]
        args: list[_Arg] = [ttl_ms(ticket_ttl_s), ttl_ms(QUEUE_SEQUENCE_TTL_S)]
        with self._translate("join_queue"):
            return int(await self._join(keys=keys, args=args))

    async def acquire_lease_in_turn(
        self, name: str, owner: str, ticket: int, *, ttl_s: float, ticket_ttl_s: float
    ) -> Lease | None:
        keys = [self._keys.lease(name), self._keys.lease_seq(name), self._keys.queue(name)]
        args: list[_Arg] = [
            owner,
            ttl_ms(ttl_s),
            ttl_ms(LEASE_SEQUENCE_TTL_S),
            ticket,
            ttl_ms(ticket_ttl_s),
        ]
        expires_at = time.time() + ttl_s
        with self._translate("acquire_lease_in_turn"):
            token = await self._acquire_in_turn(keys=keys, args=args)
        return None if token is None else Lease(name, owner, int(token), expires_at)

    async def leave_queue(self, name: str, ticket: int) -> bool:
        with self._translate("leave_queue"):
            left = await self._leave(keys=[self._keys.queue(name)], args=[ticket])
        return bool(left)

    # -- rates and slots ------------------------------------------------------------------------

    async def take(self, rates: Sequence[Rate], cost: int = 1, *, force: bool = False) -> Quota:
        """One script: its clock is the server's, so replicas with skewed clocks agree."""
        check_take(rates, cost)
        args: list[_Arg] = [cost, int(force)]
        for rate in rates:
            args += [rate.limit, ttl_ms(rate.period_s)]
        script = self._take if cost or force else self._peek
        with self._translate("take"):
            found = await script(keys=[self._keys.rate(r.key) for r in rates], args=args)
        quotas = [
            Quota(
                allowed=bool(found[i]),
                limit=rate.limit,
                remaining=int(found[i + 1]),
                reset_s=int(found[i + 2]) / 1000,
                retry_after_s=int(found[i + 3]) / 1000,
                key=rate.key,
            )
            for rate, i in zip(rates, range(0, len(found), 4), strict=True)
        ]
        return tightest(quotas, force=force)

    async def acquire_slot(self, name: str, holder: str, *, limit: int, ttl_s: float) -> int:
        args: list[_Arg] = [holder, limit, ttl_ms(ttl_s)]
        with self._translate("acquire_slot"):
            return int(await self._acquire_slot(keys=[self._keys.slots(name)], args=args))

    async def release_slot(self, name: str, holder: str) -> bool:
        with self._translate("release_slot"):
            return bool(await self._release_slot(keys=[self._keys.slots(name)], args=[holder]))

    # -- meters (budgets): redis_meters -------------------------------------------------------

    async def hold(
        self, meters: Sequence[Meter], holder: str, amounts: Sequence[int], *, ttl_s: float
    ) -> int | None:
        check_meters(meters, amounts)
        args: list[_Arg] = [holder, ttl_ms(ttl_s)]
        for meter, amount in zip(meters, amounts, strict=True):
            args += [meter.limit, amount, ttl_ms(meter.keep_s)]
        with self._translate("hold"):
            found = int(await self._hold(keys=self._meter_keys(m.key for m in meters), args=args))
        return None if found == 0 else found - 1

    async def charge(self, meters: Sequence[Meter], holder: str, amounts: Sequence[int]) -> None:
        check_meters(meters, amounts)
        args: list[_Arg] = [holder]
        for meter, amount in zip(meters, amounts, strict=True):
            args += [amount, ttl_ms(meter.keep_s)]
        with self._translate("charge"):
            await self._charge(keys=self._meter_keys(m.key for m in meters), args=args)

    async def release(self, keys: Sequence[str], holder: str) -> None:
        with self._translate("release"):
            await self._release_hold(keys=self._meter_keys(keys), args=[holder])

    async def levels(self, keys: Sequence[str]) -> list[Level]:
        with self._translate("levels"):
            found = await self._levels(keys=self._meter_keys(keys), args=[])
        return [Level(int(found[i]), int(found[i + 1])) for i in range(0, len(found), 2)]

    def _meter_keys(self, keys: Iterable[str]) -> list[str]:
        return [k for key in keys for k in (self._keys.meter(key), self._keys.meter_holders(key))]

    # -- channels -------------------------------------------------------------------------------

    async def publish(self, channel: str, message: bytes) -> int:
        check_items([message])
        with self._translate("publish"):
            return int(await self._once.publish(self._keys.channel(channel), message))

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self._subscribe(channel)

    @asynccontextmanager
    async def _subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        subscription = RedisSubscription(self._subscriber.pubsub(), self._translate)
        await subscription.open(self._keys.channel(channel))
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)
            await subscription.close()

    # -- private --------------------------------------------------------------------------------

    def _translate(self, operation: str) -> _Translated:
        """Driver and network failures leave as ``StoreError`` (the driver's on ``__cause__``)."""
        return _Translated(self._label, operation)


class _Translated:
    """``_translate``'s context: a plain (not async) one, as translating needs no await; an
    ``asynccontextmanager`` cost a generator and two awaits per command (every turn makes
    five)."""

    __slots__ = ("label", "operation")

    def __init__(self, label: str, operation: str) -> None:
        self.label, self.operation = label, operation

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: object
    ) -> None:
        if isinstance(error, (RedisError, OSError)):
            message = f"state store (redis {self.label}) {self.operation} failed: {_reason(error)}"
            raise StoreError(message, details={"operation": self.operation}) from error


def _expected(expected: bytes | None) -> list[bytes]:
    """The ``has_expected, expected`` pair of the scripts' arguments."""
    return [b"0", b""] if expected is None else [b"1", expected]


def _holder(lease: Lease) -> str:
    return f"{lease.token}:{lease.owner}"


def _reason(error: BaseException) -> str:
    """The driver's error and its message, which for redis-py names no data (keys and values
    are not echoed back): ``ConnectionError: Error 111 connecting to 127.0.0.1:1``."""
    return f"{type(error).__name__}: {error}"


def _safe_label(pool: aioredis.ConnectionPool) -> str:
    """``host:port/db`` of the pool, without credentials, for error messages."""
    kwargs = pool.connection_kwargs
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
