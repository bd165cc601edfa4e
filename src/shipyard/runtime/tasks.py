"""Event-driven tasks: acknowledged at once, run later by any worker, published when done.

The record store is the truth about a task; the broker only carries "run task X". Every
status change is a compare-and-set on the record (``transition_task``), so however many
times the broker delivers a message, a task ends ``succeeded`` at most once:

    queued → running → succeeded | failed | cancelled | dead
       ↑________|  (a failed attempt that will be retried goes back to queued)

A task with a ``session_id`` is a turn of that session, under its one-turn-at-a-time rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from shipyard.agents.context import RunInput
from shipyard.errors import StoreError, TaskFinished, TaskNotFound
from shipyard.runtime.control import Control
from shipyard.runtime.invoke import Invoker
from shipyard.stores.broker.base import Broker, TaskMessage
from shipyard.stores.records.base import (
    FINAL_TASK_STATES,
    Page,
    RecordStore,
    TaskRecord,
    TaskStatus,
    TaskTransition,
)
from shipyard.telemetry.events import new_id
from shipyard.telemetry.tracecontext import TraceParent

log = structlog.get_logger(__name__)

TASK_QUEUE = "tasks"
HANDOVER_RETRY_S = 600.0
"""How long a task the broker did not take is offered to it again in the background."""
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


def routing_key(task: TaskRecord) -> str:
    return f"{task.tenant_id}.{task.agent}"


class TaskService:
    """What the API does with tasks: submit, read, list, cancel."""

    def __init__(
        self, records: RecordStore, broker: Broker, invoker: Invoker, control: Control
    ) -> None:
        """``control``: the process's control channel (a cancel reaches the task's worker)."""
        self._records = records
        self._broker = broker
        self._control = control
        self._invoker = invoker
        self._handovers: dict[str, asyncio.Task[None]] = {}
        self.handover_retry_s = HANDOVER_RETRY_S

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
        """Record the task and hand it to the broker; ``(task, created)``. The same idempotency
        key returns the first task (and hands it to the broker again if it is still queued:
        the first hand-over may have failed; a duplicate message is harmless).
        ``parent_run_id``: the run of the agent that handed the task over; the task's run is
        recorded as its child."""
        target = self._invoker.agent(agent)  # 404 before anything is kept
        now = datetime.now(UTC)
        task, created = await self._records.create_task(
            TaskRecord(
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
            )
        )
        if created or task.status == "queued":
            message = _message(task, trace or TraceParent.new(), parent_run_id)
            try:
                await self._broker.publish(message, queue=TASK_QUEUE)
            except StoreError:
                self._hand_over_later(task, message)
                raise
        return task, created

    def _hand_over_later(
        self, task: TaskRecord, message: TaskMessage, *, noted: bool = False
    ) -> None:
        """The broker refused or could not be reached: the caller hears 503, and the recorded
        task is handed over again in the background (backing off, for ``handover_retry_s``)
        until the broker takes it or the task is no longer queued. A resubmission with the same
        idempotency key tries at once as well; a second message is harmless (the claim is a
        compare-and-set). The task is marked ``handover_pending`` in the records meanwhile, so a
        server restarted before the broker took it offers it again (``resume_handovers``)."""
        if task.id in self._handovers:
            return
        handover = asyncio.create_task(self._hand_over(task, message, noted))
        self._handovers[task.id] = handover
        handover.add_done_callback(lambda _: self._handovers.pop(task.id, None))

    async def resume_handovers(self) -> int:
        """Offer the broker again the tasks whose hand-over was still pending when a server
        stopped (at start; their trace context is new). How many."""
        pending = await self._records.pending_handovers()
        for task in pending:
            self._hand_over_later(task, _message(task, TraceParent.new(), None), noted=True)
        return len(pending)

    async def _hand_over(self, task: TaskRecord, message: TaskMessage, noted: bool) -> None:
        log.warning("task hand-over pending; retrying in the background", task_id=task.id)
        if not noted:  # so that a server restarted meanwhile offers it again
            with contextlib.suppress(StoreError):
                await self._records.mark_handover(task.tenant_id, task.id, pending=True)
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(StoreError),
                wait=wait_exponential(multiplier=0.5, max=30),
                stop=stop_after_delay(self.handover_retry_s),
                reraise=True,
            ):
                with attempt:
                    current = await self._records.get_task(task.tenant_id, task.id)
                    if current is not None and current.status == "queued":
                        await self._broker.publish(message, queue=TASK_QUEUE)
            await self._records.mark_handover(task.tenant_id, task.id, pending=False)
            log.info("task handed over after a failure", task_id=task.id)
        except StoreError as exc:
            log.error(
                "task hand-over gave up; it stays queued until resubmitted with its "
                "idempotency key",
                task_id=task.id,
                error=exc.message,
            )

    @property
    def handovers_in_flight(self) -> int:
        """Background hand-overs of this process still trying."""
        return len(self._handovers)

    async def close(self) -> None:
        """Stop background hand-overs (their tasks stay queued in the records)."""
        for handover in list(self._handovers.values()):
            handover.cancel()
        if self._handovers:
            await asyncio.wait(list(self._handovers.values()), timeout=5)

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
        """A queued task is cancelled at once; a running one is told to stop (its worker records
        it cancelled); a finished one answers 409."""
        task = await self.get(tenant_id, task_id)
        if task.status in FINAL_TASK_STATES:
            raise TaskFinished(f"task {task_id} already ended: {task.status}")
        detail = {"by": "api"}
        done = await self._records.transition_task(
            tenant_id, task_id, "cancelled", expected=frozenset({"queued"}), detail=detail
        )
        if done is not None:
            return done
        # its worker listens from before its claim (see runtime/control)
        await self._control.send(control_channel(task_id), CANCEL)
        return await self.get(tenant_id, task_id)


PARENT_RUN_HEADER = "shipyard-parent-run"


def _message(task: TaskRecord, trace: TraceParent, parent_run_id: str | None) -> TaskMessage:
    """The tenant and trace context travel in the message's headers (the tenant as the
    broker's own ``x-shipyard-tenant``), and the run that handed the task over."""
    headers = {"traceparent": trace.header()}
    if parent_run_id:
        headers[PARENT_RUN_HEADER] = parent_run_id
    return TaskMessage(
        task_id=task.id,
        tenant_id=task.tenant_id,
        agent=task.agent,
        body=orjson.dumps({"task_id": task.id}),
        priority=task.priority,
        headers=headers,
    )
