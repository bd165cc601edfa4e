"""Event-driven tasks: acknowledged at once, run later by any worker, published when done.

The record store is the truth about a task; the broker only carries "run task X". Every
status change is a compare-and-set on the record (``transition_task``), so however many
times the broker delivers a message, a task ends ``succeeded`` at most once:

    queued → running → succeeded | failed | cancelled | dead
       ↑________|  (a failed attempt that will be retried goes back to queued)

A task with a ``session_id`` is a turn of that session, under its one-turn-at-a-time rule.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from pydantic import TypeAdapter, ValidationError

from shipyard.agents.context import RunInput
from shipyard.agents.references import InputMessage
from shipyard.errors import IdempotencyConflict, InvalidInput, TaskFinished, TaskNotFound
from shipyard.models.base import Message
from shipyard.runtime.control import Control
from shipyard.runtime.handover import SWEEP_S, Handover
from shipyard.runtime.invoke import Invoker
from shipyard.stores.broker.base import GROUP_HEADER, Broker, TaskMessage
from shipyard.stores.records.base import (
    FINAL_TASK_STATES,
    Page,
    RecordStore,
    TaskRecord,
    TaskStatus,
    TaskTransition,
)
from shipyard.stores.storable import without_lone_surrogates
from shipyard.telemetry.events import new_id
from shipyard.telemetry.tracecontext import TraceParent

log = structlog.get_logger(__name__)

TASK_QUEUE = "tasks"
CANCEL = b"cancel"


def control_channel(task_id: str) -> str:
    return f"task:{{{task_id}}}:control"


_OUTCOMES = uuid.UUID("5f0c4a63-1d2e-4c43-9a57-6b1f0e8d2c11")
"""The namespace of outcome event ids."""


def cloud_event(task: TaskRecord) -> tuple[str, bytes]:
    """The task's outcome as a CloudEvents 1.0 JSON message (structured mode), with its id.

    A task reaches one final status once, so the id is derived from the task and that status,
    and the time is the move's: an outcome published again (after a worker died between storing
    and publishing it) is the same event, byte for byte, for subscribers to deduplicate."""
    event_id = uuid.uuid5(_OUTCOMES, f"{task.id}/{task.status}").hex
    return event_id, orjson.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "/shipyard/tasks",
            "type": f"dev.shipyard.task.{task.status}",
            "subject": task.id,
            "time": task.updated_at.isoformat(),
            "datacontenttype": "application/json",
            "data": {
                "task_id": task.id,
                "tenant_id": task.tenant_id,
                "agent": task.agent,
                "status": task.status,
                "output": task.output,
                "error": task.error,
                "run_id": task.run_id,
                "attempts": task.attempts,
                "usage": {
                    "prompt_tokens": task.prompt_tokens,
                    "completion_tokens": task.completion_tokens,
                    "cost_usd": task.cost_usd,
                },
            },
        }
    )


_MESSAGES: TypeAdapter[list[Message]] = TypeAdapter(list[InputMessage])  # references stay


def task_input(task: TaskRecord) -> RunInput:
    """The task's input as an agent takes it: text, or the list of messages (stored as JSON,
    rebuilt into ``Message`` models). Stored input that is neither raises ``InvalidInput``.
    A lone surrogate (a row from before the API refused them) becomes U+FFFD, as in what a run
    produces: the run's events then need no check of their own for the input."""
    stored = without_lone_surrogates(task.input)
    if isinstance(stored, str):
        return stored
    try:
        return _MESSAGES.validate_python(stored)
    except ValidationError as exc:
        raise InvalidInput(
            f"task {task.id}: its stored input is neither text nor a list of messages",
            details={"errors": exc.error_count()},
        ) from None


def routing_key(task: TaskRecord) -> str:
    return f"{task.tenant_id}.{task.agent}"


class TaskService:
    """What the API does with tasks: submit, read, list, cancel."""

    def __init__(
        self,
        records: RecordStore,
        broker: Broker,
        invoker: Invoker,
        control: Control,
        *,
        handover_sweep_s: float = SWEEP_S,
    ) -> None:
        """``control``: the process's control channel (a cancel reaches the task's worker);
        ``handover_sweep_s``: see ``runtime.handover``."""
        self._records = records
        self._control = control
        self._invoker = invoker
        self._handover = Handover(
            records, broker, TASK_QUEUE, _taken_over, sweep_s=handover_sweep_s
        )

    async def submit(
        self,
        tenant_id: str,
        *,
        agent: str,
        input: RunInput,
        metadata: dict[str, Any],
        session_id: str | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        priority: int = 0,
        deadline: datetime | None = None,
        trace: TraceParent | None = None,
        parent_run_id: str | None = None,
    ) -> tuple[TaskRecord, bool]:
        """Record the task, then hand it to the broker in the background (``runtime.handover``:
        recorded, it is not lost); ``(task, created)``. The same idempotency key returns the
        first task if the request was the same (``IdempotencyConflict`` if not).
        ``parent_run_id``: the run of the agent that handed the task over; the
        task's run is recorded as its child."""
        target = self._invoker.agent(agent)  # 404 before anything is kept
        now = datetime.now(UTC)
        asked = TaskRecord(
            id=new_id("task"),
            tenant_id=tenant_id,
            agent=target.name,
            status="queued",
            input=input
            if isinstance(input, str)
            else [m.model_dump(exclude_none=True) for m in input],
            metadata=metadata,
            session_id=session_id,
            webhook_url=webhook_url,
            idempotency_key=idempotency_key,
            priority=priority,
            deadline=deadline,
            created_at=now,
            updated_at=now,
            handover_pending=True,
        )
        task, created = await self._records.create_task(asked)
        if not created:
            _check_same_request(task, asked)
        if created or (task.status == "queued" and task.handover_pending):
            self._handover.offer(_message(task, trace or TraceParent.new(), parent_run_id))
        return task, created

    async def resume_handovers(self) -> int:
        """Take over the tasks whose hand-over nobody is doing (a server starting: the process
        that recorded them stopped), then sweep for them periodically; how many."""
        return await self._handover.resume()

    @property
    def handovers_in_flight(self) -> int:
        """Tasks this process has recorded but the broker has not taken yet."""
        return self._handover.pending

    async def close(self) -> None:
        """Hand over what waits, for a few seconds; the rest stays pending in the records."""
        await self._handover.close()

    async def get(self, tenant_id: str, task_id: str) -> TaskRecord:
        task = await self._records.get_task(tenant_id, task_id)
        if task is None:
            raise TaskNotFound(f"no task {task_id!r}")
        return task

    async def transitions(self, tenant_id: str, task_id: str) -> list[TaskTransition]:
        await self.get(tenant_id, task_id)
        return await self._records.task_transitions(tenant_id, task_id)

    async def listing(
        self,
        tenant_id: str,
        *,
        status: TaskStatus | None,
        agent: str | None,
        limit: int,
        cursor: str | None,
    ) -> Page[TaskRecord]:
        return await self._records.list_tasks(
            tenant_id, status=status, agent=agent, limit=limit, cursor=cursor
        )

    async def cancel(self, tenant_id: str, task_id: str) -> TaskRecord:
        """A queued task (waiting for its first run or a retry) is cancelled at once; a running
        one is told to stop (its worker records it cancelled) and the request is recorded as a
        move (``detail.cancel == "requested"``), so that a worker taking the run over after a
        crash cancels it instead of running it; a finished one answers 409."""
        for _ in range(CANCEL_TRIES):  # a task moving meanwhile (a retry going back to queued)
            task = await self.get(tenant_id, task_id)
            if task.status in FINAL_TASK_STATES:
                raise TaskFinished(f"task {task_id} already ended: {task.status}")
            expected = frozenset({task.status})
            if task.status == "queued":
                done = await self._records.transition_task(
                    tenant_id, task_id, "cancelled", expected=expected, detail={"by": "api"}
                )
                if done is not None:
                    return done
                continue
            requested = await self._records.transition_task(
                tenant_id, task_id, "running", expected=expected, detail=CANCEL_REQUESTED
            )
            if requested is not None:
                # its worker listens from before its claim (see runtime/control)
                await self._control.send(control_channel(task_id), CANCEL)
                return requested
        return await self.get(tenant_id, task_id)


CANCEL_TRIES = 5
CANCEL_REQUESTED = {"by": "api", "cancel": "requested"}
"""The detail of the move that records a cancel asked of a running task."""


def cancel_requested(moves: list[TaskTransition]) -> bool:
    """Whether a cancel was asked of the task's current run (since it last went to queued)."""
    for move in reversed(moves):
        if move.status != "running":
            return False
        if move.detail.get("cancel") == "requested":
            return True
    return False


PARENT_RUN_HEADER = "shipyard-parent-run"


def offer_of(message: TaskMessage) -> str | None:
    """The id of this message (each hand-over of a task is a message of its own; a retry carries
    its first's); None for a message from before offers had ids, or not one of ours."""
    try:
        offer = orjson.loads(message.body).get("offer")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return offer if isinstance(offer, str) else None


def _taken_over(task: TaskRecord) -> TaskMessage:
    """The message of a task a sweep took over: the next attempt (one may have run, if the note
    that the broker took the first message failed); the trace context and the parent run that
    went with the first are not recorded, so it starts a new trace."""
    return _message(task, TraceParent.new(), None, attempt=task.attempts + 1)


def _message(
    task: TaskRecord, trace: TraceParent, parent_run_id: str | None, *, attempt: int = 1
) -> TaskMessage:
    """The tenant and trace context travel in the message's headers (the tenant as the
    broker's own ``x-shipyard-tenant``), the run that handed the task over, and a session
    turn's session as its ordering group."""
    headers = {"traceparent": trace.header()}
    if parent_run_id:
        headers[PARENT_RUN_HEADER] = parent_run_id
    if task.session_id:
        headers[GROUP_HEADER] = task.session_id  # a session's turns keep their order (FIFO)
    return TaskMessage(
        task_id=task.id,
        tenant_id=task.tenant_id,
        agent=task.agent,
        body=orjson.dumps({"task_id": task.id, "offer": uuid.uuid4().hex}),
        priority=task.priority,
        attempt=attempt,
        headers=headers,
    )


_REQUEST_FIELDS = (
    "agent",
    "input",
    "metadata",
    "session_id",
    "webhook_url",
    "priority",
    "deadline",
)
"""What a task's submitter asked for: a reused idempotency key must come with the same."""


def _check_same_request(first: TaskRecord, again: TaskRecord) -> None:
    """Compares the stored fields (JSON values as read back), so the check needs neither a
    column nor a round trip of its own."""
    stored, asked = _request_of(first), _request_of(again)
    differ = [name for name in _REQUEST_FIELDS if stored[name] != asked[name]]
    if differ:
        raise IdempotencyConflict(
            f"idempotency key {again.idempotency_key!r} was used for task {first.id} with "
            f"another request: {', '.join(differ)} differ",
            details={"task_id": first.id, "fields": differ},
        )


def _request_of(task: TaskRecord) -> dict[str, Any]:
    values = task.model_dump(include=set(_REQUEST_FIELDS))
    deadline = values.pop("deadline")  # compared as an instant, whatever its time zone
    return {**json.loads(json.dumps(values, default=str)), "deadline": deadline}
