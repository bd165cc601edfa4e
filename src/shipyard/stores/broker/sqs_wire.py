"""How the SQS broker lays things out: queue names under one prefix, and messages as SQS ones.

SQS has no priorities, so a queue ``q`` under the prefix ``p`` is up to ten SQS queues, one per
priority used, plus its dead letters::

    p-q-p0 ... p-q-p9   work queues, created on first use; their redrive policy moves a message
                        received ``max_receives`` times (a worker crashing on it) to the dead
                        letters
    p-q-dead            the dead-letter queue (14 days of retention, SQS's maximum)
    p-results           the SNS topic of results; each subscriber polls a queue of its own,
                        ``p-results-<random>``, subscribed to it while it listens

With ``fifo=true`` the work and dead-letter queues are FIFO queues, ``p-q-p0.fifo`` ...
``p-q-dead.fifo``: a message's group (``MessageGroupId``) is its ``shipyard-group`` header (a
session turn's session id), else its task id; its deduplication id is its task id and attempt.

A name SQS would refuse (``.`` and ``:`` are ours, not SQS's; at most 80 characters) is made
safe, with a hash of the original so that two names never meet.

A task message travels as the SQS body (its JSON as text; base64 if it is not text SQS can
carry) with message attributes: ``shipyard.tenant`` (the tenant, for filtering and for the
eye), the message's own headers each as an attribute of its own (``traceparent``,
``tracestate``...), and ``shipyard.task``, a JSON object with the task id, agent, attempt,
priority and, on a dead letter, the reason and when it died. SQS allows ten attributes a
message: headers beyond ``MAX_HEADER_ATTRIBUTES`` (or named in a way SQS refuses) travel inside
``shipyard.task`` instead.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from shipyard.stores.broker.base import GROUP_HEADER, MAX_PRIORITY, TaskMessage

TENANT = "shipyard.tenant"
META = "shipyard.task"
MAX_HEADER_ATTRIBUTES = 8
"""SQS's ten attributes a message, less ``shipyard.tenant`` and ``shipyard.task``."""
MAX_NAME = 80
FIFO_SUFFIX = ".fifo"
MAX_FIFO_ID = 128
"""SQS's longest ``MessageGroupId`` and ``MessageDeduplicationId``."""
_SAFE = re.compile(r"[A-Za-z0-9_-]+")
_ATTRIBUTE = re.compile(r"(?!(?i:aws\.|amazon\.))[A-Za-z0-9_-][A-Za-z0-9_.-]{0,255}")
_FIFO_ID = re.compile(r"[\x21-\x7e]{1,128}")  # letters, digits, punctuation (MAX_FIFO_ID)
_TEXT = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")


def safe_name(name: str, *, room: int = MAX_NAME) -> str:
    """``name`` as SQS allows it (letters, digits, ``-`` and ``_``), within ``room``
    characters; a changed or shortened name ends with a hash of the original."""
    if _SAFE.fullmatch(name) and len(name) <= room:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    return f"{cleaned[: room - 11]}-{digest}"


@dataclass(frozen=True, slots=True)
class Names:
    """Where each thing lives, under one prefix (``sqs://<prefix>``)."""

    prefix: str
    fifo: bool = False

    @property
    def suffix(self) -> str:
        """SQS names a FIFO queue ``*.fifo``."""
        return FIFO_SUFFIX if self.fifo else ""

    def base(self, queue: str) -> str:
        room = MAX_NAME - len("-dead") - len(self.suffix)
        return safe_name(f"{self.prefix}-{queue}", room=room)

    def work(self, queue: str, priority: int) -> str:
        return f"{self.base(queue)}-p{priority}{self.suffix}"

    def dead(self, queue: str) -> str:
        return f"{self.base(queue)}-dead{self.suffix}"

    def priority_of(self, queue: str, name: str) -> int | None:
        """The priority of the work queue ``name`` of ``queue``, or ``None`` if it is not one."""
        base = self.base(queue)
        match = re.fullmatch(re.escape(base) + r"-p([0-9])" + re.escape(self.suffix), name)
        return int(match.group(1)) if match else None

    @property
    def results_topic(self) -> str:
        return safe_name(f"{self.prefix}-results")

    def results_queue(self, token: str) -> str:
        return safe_name(f"{self.prefix}-results-{token}")


def to_sqs(
    message: TaskMessage, *, dead_reason: str | None = None, not_before_ns: int | None = None
) -> tuple[str, dict[str, Any]]:
    """The SQS body and message attributes of ``message`` (a dead letter with a reason; one
    delayed beyond SQS's 15 minutes with the time it may run)."""
    meta: dict[str, Any] = {
        "id": message.task_id,
        "agent": message.agent,
        "attempt": message.attempt,
        "priority": message.priority,
    }
    body = _text(message.body)
    if body is None:
        body = base64.b64encode(message.body).decode()
        meta["base64"] = True
    attributes = {TENANT: _string(message.tenant_id)}
    own = dict(message.headers)
    if len(own) <= MAX_HEADER_ATTRIBUTES and all(_ATTRIBUTE.fullmatch(k) for k in own):
        attributes |= {key: _string(value) for key, value in own.items() if value}
        empty = {key: value for key, value in own.items() if not value}  # SQS refuses ""
        if empty:
            meta["headers"] = empty
    else:
        meta["headers"] = own
    if dead_reason is not None:
        meta["dead"] = {"reason": dead_reason, "at_ns": time.time_ns()}
    if not_before_ns is not None:
        meta["not_before_ns"] = not_before_ns
    attributes[META] = _string(orjson.dumps(meta).decode())
    return body, attributes


def fifo_ids(message: TaskMessage) -> tuple[str, str]:
    """A FIFO queue's ``MessageGroupId`` (the message's group, else its task id) and
    ``MessageDeduplicationId`` (task id and attempt: the same hand-over sent twice within SQS's
    five minutes is stored once, a later attempt is not a duplicate)."""
    group = message.headers.get(GROUP_HEADER) or message.task_id
    return _fifo_id(group), _fifo_id(f"{message.task_id}.{message.attempt}")


def fifo_received(message: TaskMessage, receive_count: int) -> TaskMessage:
    """A message received from a FIFO queue: a retry there is the same message received again
    (FIFO has no per-message delay to send a copy with), so each receive counts an attempt."""
    return replace(message, attempt=message.attempt + receive_count - 1)


def _fifo_id(value: str) -> str:
    """``value`` as SQS takes an id (at most 128 printable ASCII characters), else a hash."""
    if _FIFO_ID.fullmatch(value):
        return value
    return hashlib.sha256(value.encode()).hexdigest()


def from_sqs(body: str, attributes: Mapping[str, Any]) -> TaskMessage:
    """The task message; ``ValueError`` (or ``TypeError``) if it is not one of ours."""
    meta = _meta(attributes)
    headers = {
        key: str(value["StringValue"])
        for key, value in attributes.items()
        if key not in (TENANT, META)
    }
    extra = meta.get("headers", {})
    if not isinstance(extra, dict):
        raise TypeError("the headers of a task message are an object")
    headers |= extra
    raw = base64.b64decode(body) if meta.get("base64") else body.encode()
    return TaskMessage(
        task_id=str(meta["id"]),
        tenant_id=str(attributes[TENANT]["StringValue"]),
        agent=str(meta["agent"]),
        body=raw,
        priority=min(int(meta.get("priority", 0)), MAX_PRIORITY),
        attempt=int(meta.get("attempt", 1)),
        headers=headers,
    )


def dead_reason(attributes: Mapping[str, Any], receive_count: int) -> tuple[str, int]:
    """Why a dead letter died and when (ns): ours if ``dead`` gave a reason, else the redrive
    policy moved it there after ``receive_count`` receives."""
    dead = _meta(attributes).get("dead")
    if isinstance(dead, dict):
        return str(dead.get("reason", "unknown")), int(dead.get("at_ns", 0))
    return f"received {receive_count} times (redrive policy)", 0


def not_before_ns(attributes: Mapping[str, Any]) -> int:
    """When a message delayed beyond SQS's 15 minutes may run (ns since the epoch), else 0."""
    return int(_meta(attributes).get("not_before_ns", 0))


def _meta(attributes: Mapping[str, Any]) -> dict[str, Any]:
    try:
        meta = orjson.loads(attributes[META]["StringValue"])
    except KeyError as e:
        raise ValueError("not a task message: no shipyard.task attribute") from e
    if not isinstance(meta, dict):
        raise TypeError("shipyard.task is not an object")
    return meta


def _string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def _text(body: bytes) -> str | None:
    """``body`` as text SQS accepts (valid UTF-8 of the characters it allows), or ``None``."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return None
    return text if text and _TEXT.fullmatch(text) else None
