"""The broker: task dispatch with at-least-once delivery, results, dead letters.

A producer ``publish``-es a ``TaskMessage`` to a named queue; the call returns once the broker has
stored it durably. A worker ``consume``-s the queue and settles each ``Delivery`` exactly once:

- ``ack()`` — done; call it only after the task's result is stored, so a crash in between
  redelivers the task instead of losing it;
- ``nack(requeue=True)`` — hand it back at once (redelivered, ``redelivered`` set);
  ``nack(requeue=False)`` — reject it to the dead letters with the reason ``"rejected"``;
- ``retry(delay_s)`` — a new delivery after ``delay_s``, its ``attempt`` one higher;
- ``dead(reason)`` — to the queue's dead letters, with the reason.

A delivery left unsettled when its consumer goes away (the ``consume`` block ends, the
connection drops, the process is killed) is delivered again, with ``redelivered`` set. So every
message is delivered at least once, and a worker must tolerate seeing one twice.

Higher ``priority`` (0-9) goes first among messages waiting together; otherwise a queue is
first in, first out. Trace context (W3C ``traceparent``/``tracestate``) travels in
``TaskMessage.headers``; the tenant, agent, task id and attempt travel beside it.

Results are CloudEvents JSON published on a topic exchange under a routing key
``"{tenant}.{agent}"``; subscribers bind with patterns (``*`` one word, ``#`` any number).

Four narrow protocols, which one backend implements together as ``Broker``:
``TaskQueue`` (publish, consume), ``Delivery`` (settling one message), ``Results`` (the results
exchange) and ``QueueStats`` (depth and dead letters, for metrics and tests).

Backends: ``embedded.py`` (SQLite, one process or a few sharing a file) and ``rabbitmq.py``.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from typing import Protocol

MAX_PRIORITY = 9
DEFAULT_QUEUE = "tasks"
GROUP_HEADER = "shipyard-group"
"""A message's ordering group: a broker that keeps order per group (SQS FIFO queues, as their
``MessageGroupId``) hands out a group's messages one at a time, in order. A session turn's
task carries its session id here."""
RESERVED_HEADER_PREFIX = "x-"
"""Headers starting with ``x-`` belong to the brokers (``x-shipyard-*``, RabbitMQ's ``x-death``);
a message's own headers (``traceparent``, ``tracestate``, ``baggage``...) may not use it."""

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,200}")


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskMessage:
    """One task to run: what the broker carries. ``body`` is the task's JSON, opaque here."""

    task_id: str
    tenant_id: str
    agent: str
    body: bytes
    priority: int = 0
    attempt: int = 1
    """1 for the first run; ``Delivery.retry`` redelivers with ``attempt + 1``."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Trace context and other propagated headers, e.g. ``{"traceparent": "00-..."}``."""

    def next_attempt(self) -> TaskMessage:
        """The same message for its redelivery (``Delivery.retry``)."""
        return replace(self, attempt=self.attempt + 1)

    def __post_init__(self) -> None:
        if not isinstance(self.body, bytes):
            raise TypeError(f"a task message body is bytes, not {type(self.body).__name__}")
        if not (isinstance(self.priority, int) and 0 <= self.priority <= MAX_PRIORITY):
            raise ValueError(f"priority must be an int from 0 to {MAX_PRIORITY}: {self.priority!r}")
        if not (isinstance(self.attempt, int) and self.attempt >= 1):
            raise ValueError(f"attempt must be an int of at least 1: {self.attempt!r}")
        for name in ("task_id", "tenant_id", "agent"):
            if not getattr(self, name):
                raise ValueError(f"a task message needs a non-empty {name}")
        for key, value in self.headers.items():
            if not (isinstance(key, str) and isinstance(value, str)):
                raise TypeError(f"task message headers are str to str: {key!r}: {value!r}")
            if key.lower().startswith(RESERVED_HEADER_PREFIX):
                raise ValueError(f"header {key!r}: names starting with 'x-' are the broker's")
        object.__setattr__(self, "headers", dict(self.headers))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that went to its queue's dead letters, and why (``"rejected"`` after
    ``nack(requeue=False)``, else the reason given to ``dead``)."""

    message: TaskMessage
    reason: str


@dataclass(frozen=True, slots=True)
class ResultEvent:
    """A message of the results exchange: a CloudEvents JSON ``event`` and its routing key."""

    routing_key: str
    event: bytes


class Delivery(Protocol):
    """One delivery of a message to a consumer; settle it exactly once (a second settlement
    raises ``RuntimeError``). Settling after the delivery was handed back — its consumer
    closed, its connection dropped, its lease expired — raises ``StoreError``: the message is
    (or will be) delivered again."""

    @property
    def message(self) -> TaskMessage: ...

    @property
    def redelivered(self) -> bool:
        """Whether this message was delivered before and not settled (a consumer died, or
        ``nack(requeue=True)``). A ``retry`` is a new delivery: not flagged."""
        ...

    async def ack(self) -> None:
        """The task is done and its result stored: forget the message."""
        ...

    async def nack(self, *, requeue: bool) -> None:
        """Hand the message back for another delivery now, or reject it to the dead letters."""
        ...

    async def retry(self, delay_s: float) -> None:
        """Deliver the message again after ``delay_s`` seconds, with ``attempt + 1``."""
        ...

    async def dead(self, reason: str) -> None:
        """Move the message to its queue's dead letters with ``reason``."""
        ...


class TaskQueue(Protocol):
    async def publish(self, message: TaskMessage, *, queue: str = DEFAULT_QUEUE) -> None:
        """Queue ``message`` durably; returns once the broker has confirmed it is stored."""
        ...

    def consume(
        self, queue: str = DEFAULT_QUEUE, *, prefetch: int
    ) -> AbstractAsyncContextManager[AsyncIterator[Delivery]]:
        """``async with broker.consume(q, prefetch=8) as deliveries: async for d in deliveries:``

        At most ``prefetch`` deliveries are unsettled at a time: the iteration waits for one to
        be settled before it yields more. Leaving the block hands the unsettled ones back
        (they are redelivered). The iteration ends when the broker closes.
        """
        ...


class Results(Protocol):
    async def publish_result(self, event: bytes, *, routing_key: str) -> None:
        """Publish a CloudEvents JSON ``event`` on the results exchange (``"tenant.agent"``);
        returns once the broker has accepted it. Nobody subscribed: it is dropped."""
        ...

    def subscribe_results(
        self, pattern: str = "#"
    ) -> AbstractAsyncContextManager[AsyncIterator[ResultEvent]]:
        """Results whose routing key matches ``pattern`` (``acme.*``, ``#``), published while
        the ``async with`` body runs; the subscription is in place when the body starts."""
        ...


class QueueStats(Protocol):
    async def depth(self, queue: str = DEFAULT_QUEUE) -> int:
        """Messages waiting for a consumer now: not in flight, not delayed, not dead."""
        ...

    async def dead_letters(
        self, queue: str = DEFAULT_QUEUE, *, limit: int = 100
    ) -> list[DeadLetter]:
        """Up to ``limit`` of the queue's dead letters, oldest first, without removing them."""
        ...


class Broker(TaskQueue, Results, QueueStats, Protocol):
    async def ping(self) -> None:
        """Raise ``StoreError`` unless the broker answers."""
        ...

    async def close(self) -> None:
        """Hand back unsettled deliveries, end every consumption and subscription; idempotent."""
        ...


# -- pure helpers shared by the backends ---------------------------------------------------------


def backoff_s(attempt: int, *, base_s: float = 1.0, cap_s: float = 300.0) -> float:
    """The delay before running ``attempt + 1`` after ``attempt`` failed: ``base_s`` doubled
    per attempt, at most ``cap_s``. No jitter, on purpose: on RabbitMQ every distinct delay is a
    queue, so retries should use few of them."""
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1: {attempt!r}")
    return float(min(cap_s, base_s * 2 ** min(attempt - 1, 64)))


def check_queue(queue: str) -> str:
    """A queue name: letters, digits and ``_ . : -``, at most 200 characters."""
    if not (isinstance(queue, str) and _QUEUE_NAME.fullmatch(queue)):
        raise ValueError(f"invalid queue name {queue!r}: use letters, digits and _ . : -")
    return queue


def check_delay(delay_s: float) -> float:
    if not (isinstance(delay_s, int | float) and delay_s >= 0 and math.isfinite(delay_s)):
        raise ValueError(f"a retry delay is a finite number of seconds >= 0, not {delay_s!r}")
    return float(delay_s)


def check_prefetch(prefetch: int) -> int:
    if not (isinstance(prefetch, int) and 1 <= prefetch <= 65_535):
        raise ValueError(f"prefetch must be an int from 1 to 65535: {prefetch!r}")
    return prefetch


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: words split on ``.``; ``*`` is exactly one word, ``#`` zero or more."""
    return _match(pattern.split("."), routing_key.split("."))


def _match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head in ("*", words[0])) and _match(rest, words[1:])
