"""How a running agent reaches other agents (``shipyard.agents.delegate``): a child run through
the invoker, or a task through the task service, both tied to the calling step."""

from __future__ import annotations

import asyncio
import itertools

from shipyard.agents.context import RunInput, RunRequest
from shipyard.agents.delegate import DelegatedTask
from shipyard.errors import ConfigError
from shipyard.runtime.invoke import Invoker
from shipyard.runtime.tasks import TaskService
from shipyard.stores.records.base import FINAL_TASK_STATES
from shipyard.telemetry.events import Step, current_step
from shipyard.telemetry.tracecontext import TraceParent

POLL_S = (0.02, 0.05, 0.1, 0.25, 0.5)
"""Awaited tasks are polled in the records, quickly at first."""


class Delegation:
    def __init__(self, invoker: Invoker, tasks: TaskService) -> None:
        self._invoker = invoker
        self._tasks = tasks

    async def call(self, agent: str, input: RunInput) -> str:
        step = _step()
        # the invoker takes the parent run and span from the current step
        request = RunRequest(tenant_id=step.tenant_id, agent=agent, input=input)
        outcome = await self._invoker.invoke(request)
        return outcome.output

    async def submit(
        self, agent: str, input: RunInput, *, wait: bool, timeout_s: float
    ) -> DelegatedTask:
        step = _step()
        task, _ = await self._tasks.submit(
            step.tenant_id,
            agent=agent,
            input=input,
            metadata={},
            trace=TraceParent(step.trace_id, step.span_id),
            parent_run_id=step.run_id,
        )
        if not wait:
            return DelegatedTask(task.id, task.status)
        async with asyncio.timeout(timeout_s):
            for poll in itertools.count():
                task = await self._tasks.get(step.tenant_id, task.id)
                if task.status in FINAL_TASK_STATES:
                    break
                await asyncio.sleep(POLL_S[min(poll, len(POLL_S) - 1)])
        return DelegatedTask(task.id, task.status, task.output, task.error)


def _step() -> Step:
    step = current_step.get()
    if step is None:
        raise ConfigError("agents can call other agents only from inside a run")
    return step
