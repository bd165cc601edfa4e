"""How the RabbitMQ broker lays things out: names under one prefix, and messages as AMQP.

Topology, for a queue ``q`` under the prefix ``p`` (``shipyard.`` by default)::

    p + q                    durable work queue, x-max-priority 9, dead-letters to ``p + dead``
                             with routing key ``p + q``
    p + q + "/dead"          durable dead-letter queue, bound to ``p + dead`` by ``p + q``
    p + q + "/retry-<ms>ms"  durable delay queue: x-message-ttl <ms>, dead-letters back to the
                             work queue through the default exchange; deleted by RabbitMQ
                             (x-expires) a minute after it was last used
    p + "dead"               direct exchange of dead letters
    p + "results"            topic exchange of results, routing keys ``tenant.agent``

A queue name never contains ``/`` (``base.check_queue``), so the suffixes cannot collide.

A task message travels as a persistent AMQP message: ``message_id`` is the task id, the AMQP
``priority`` its priority, the body its JSON; headers carry the message's own headers (trace
context) beside ``x-shipyard-tenant``, ``x-shipyard-agent``, ``x-shipyard-attempt`` and, on a
dead letter, ``x-shipyard-dead-reason``.
"""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, DeliveryMode

from shipyard.stores.broker.base import MAX_PRIORITY, RESERVED_HEADER_PREFIX, TaskMessage

TENANT = "x-shipyard-tenant"
AGENT = "x-shipyard-agent"
ATTEMPT = "x-shipyard-attempt"
DEAD_REASON = "x-shipyard-dead-reason"
RETRY_QUEUE_IDLE_MS = 60_000


class Names:
    """Where each thing lives on the server, under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.dead_exchange = f"{prefix}dead"
        self.results_exchange = f"{prefix}results"

    def work(self, queue: str) -> str:
        return f"{self.prefix}{queue}"

    def dead(self, queue: str) -> str:
        return f"{self.prefix}{queue}/dead"

    def retry(self, queue: str, delay_ms: int) -> str:
        return f"{self.prefix}{queue}/retry-{delay_ms}ms"

    def work_arguments(self, queue: str) -> dict[str, Any]:
        return {
            "x-max-priority": MAX_PRIORITY,
            "x-dead-letter-exchange": self.dead_exchange,
            "x-dead-letter-routing-key": self.work(queue),
        }

    def retry_arguments(self, queue: str, delay_ms: int) -> dict[str, Any]:
        return {
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.work(queue),
            "x-expires": delay_ms + RETRY_QUEUE_IDLE_MS,
        }


def to_amqp(message: TaskMessage, *, dead_reason: str | None = None) -> aio_pika.Message:
    headers: dict[str, Any] = {
        **message.headers,
        TENANT: message.tenant_id,
        AGENT: message.agent,
        ATTEMPT: message.attempt,
    }
    if dead_reason is not None:
        headers[DEAD_REASON] = dead_reason
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type="application/json",
        delivery_mode=DeliveryMode.PERSISTENT,
        priority=message.priority,
        message_id=message.task_id,
    )


def from_amqp(incoming: AbstractIncomingMessage) -> TaskMessage:
    """The task message; ``ValueError`` (or ``TypeError``) if it is not one of ours."""
    headers = incoming.headers or {}
    own = {
        key: _text(value)
        for key, value in headers.items()
        if not key.lower().startswith(RESERVED_HEADER_PREFIX)
    }
    return TaskMessage(
        task_id=incoming.message_id or "",
        tenant_id=_text(headers.get(TENANT, "")),
        agent=_text(headers.get(AGENT, "")),
        body=incoming.body,
        priority=min(incoming.priority or 0, MAX_PRIORITY),
        attempt=_attempt(headers.get(ATTEMPT, 1)),
        headers=own,
    )


def dead_reason(incoming: AbstractIncomingMessage) -> str:
    """Ours if ``dead`` gave one, else RabbitMQ's: ``rejected`` (a nack), ``expired``..."""
    headers = incoming.headers or {}
    if DEAD_REASON in headers:
        return _text(headers[DEAD_REASON])
    deaths = headers.get("x-death")
    if isinstance(deaths, list | tuple) and deaths and isinstance(deaths[0], dict):
        return _text(deaths[0].get("reason", "unknown"))
    return "unknown"


def _attempt(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str | bytes):
        raise TypeError(f"{ATTEMPT} is not a number: {value!r}")
    return int(value)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
