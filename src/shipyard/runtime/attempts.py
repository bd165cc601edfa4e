"""What a worker decides about an attempt before and around its run.

``run_task`` runs a claimed task's agent (a session turn if the task has a session), in the
trace it was submitted in, stoppable by a cancel request. ``before_run`` says whether a claimed
task ends without running, and how: delivered more than ``max_attempts`` times (its workers kept
dying), cancelled while the worker that died ran it, its previous run already finished (the
worker died after recording the run, before the task's outcome: the agent does not run again
for it), or past its deadline. The checks of a redelivery read the records; a first delivery
costs no read (the hot path).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from shipyard.agents.context import RunInput, RunRequest
from shipyard.errors import RunCancelled
from shipyard.runtime.control import Stopper
from shipyard.runtime.invoke import RunOutcome
from shipyard.runtime.services import Services
from shipyard.runtime.tasks import PARENT_RUN_HEADER, cancel_requested
from shipyard.stores.records.base import RunRecords, TaskRecord, TaskRecords, TaskStatus
from shipyard.telemetry.events import Event, Sink
from shipyard.telemetry.tracecontext import TraceParent


@dataclass(frozen=True, slots=True)
class Settled:
    """The outcome a claimed task ends with, without running (``dead``: dead-letter its
    message with that reason)."""

    status: TaskStatus
    fields: dict[str, Any] = field(default_factory=dict)
    dead: str | None = None


class Records(TaskRecords, RunRecords, Protocol):
    pass


async def before_run(
    records: Records, claimed: TaskRecord, *, redelivered: bool, max_attempts: int
) -> Settled | None:
    """How the claimed task ends without running, or None: it runs."""
    if claimed.attempts > max_attempts:
        message = f"delivered {claimed.attempts} times without an outcome"
        error = {"code": "attempts_exhausted", "message": message}
        return Settled("dead", {"error": error}, dead=message)
    if redelivered:
        settled = await _from_before(records, claimed)
        if settled is not None:
            return settled
    if claimed.deadline is not None and claimed.deadline < datetime.now(UTC):
        error = {"code": "deadline_exceeded", "message": "the task's deadline passed"}
        return Settled("failed", {"error": error})
    return None


async def _from_before(records: Records, claimed: TaskRecord) -> Settled | None:
    """A redelivery (its worker died, or a store was down): cancelled if a cancel was asked of
    the run it takes over; that run's outcome if the run finished."""
    moves = await records.task_transitions(claimed.tenant_id, claimed.id)
    if cancel_requested(moves):
        error = {"code": "cancelled", "message": "cancelled through the API"}
        return Settled("cancelled", {"error": error})
    runs = [m.detail.get("run_id") for m in moves[:-1] if m.status == "running"]  # not ours
    earlier = runs[-1] if runs and isinstance(runs[-1], str) else None
    previous = await records.get_run(claimed.tenant_id, earlier) if earlier else None
    if previous is None or previous.status != "succeeded" or previous.task_id != claimed.id:
        return None
    return Settled(
        "succeeded",
        {
            "output": previous.output,
            "run_id": previous.id,
            "prompt_tokens": previous.prompt_tokens,
            "completion_tokens": previous.completion_tokens,
            "cost_usd": previous.cost_usd,
        },
    )


async def run_task(
    services: Services,
    task: TaskRecord,
    input: RunInput,
    *,
    run_id: str,
    stopper: Stopper,
    sinks: Sequence[Sink],
    headers: Mapping[str, str],
) -> RunOutcome:
    """Run the task (in the trace it was submitted in); a cancel request (from the API) stops
    the agent (``RunCancelled``)."""
    parent = TraceParent.parse(headers.get("traceparent"))
    parent_run_id = headers.get(PARENT_RUN_HEADER)

    request = RunRequest(
        tenant_id=task.tenant_id,
        agent=task.agent,
        input=input,
        run_id=run_id,
        session_id=task.session_id,
        task_id=task.id,
        parent=parent,
        parent_run_id=parent_run_id,
        metadata=task.metadata,
    )

    async def run(extra: Sequence[Sink]) -> RunOutcome:
        every = [*extra, *sinks]
        if task.session_id:
            return await services.sessions.turn(request, sinks=every)
        return await services.invoker.invoke(request, sinks=every)

    return await stopper.run(
        run,
        stopped=lambda: RunCancelled("cancelled through the API"),
        reason="cancelled through the API",
    )


class Started:
    """A sink that notes the id of the run that started (a run that failed before it started,
    say on an unknown agent, has no record to point to)."""

    def __init__(self) -> None:
        self.id: str | None = None

    def __call__(self, event: Event) -> None:
        if event.type == "run.started":
            self.id = event.run_id


def unexpected(exc: BaseException) -> dict[str, Any]:
    """The task's error for a failure the worker does not classify: its kind, never its
    message (which may hold data); the traceback goes to the worker log."""
    return {
        "code": "internal_error",
        "message": f"the worker failed on this task ({type(exc).__name__}); see its log",
    }
