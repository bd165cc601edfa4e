"""A task's event stream: its status changes and, after each ``running`` change, the events
of the run that attempt started, as typed frames (the API formats them as Server-Sent Events).

It polls the records, so it works on any replica, whichever worker runs the task."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from shipyard.runtime.tasks import TaskService
from shipyard.stores.records.base import FINAL_TASK_STATES, RunRecords, TaskTransition
from shipyard.telemetry.events import Event

POLL_S = 0.25
"""How often a task's event stream looks for news in the records."""
EVENTS_PAGE = 1000

TaskFrame = tuple[str, Event | TaskTransition]
"""``(id, item)``: a change has id ``<position>``, a run's event ``<position>.<seq>``."""


async def task_frames(
    service: TaskService,
    records: RunRecords,
    tenant_id: str,
    task_id: str,
    after: tuple[int, int],
) -> AsyncIterator[TaskFrame]:
    """The frames after ``after`` (``(position, seq)``), until the task ends. A run's events
    are stored before the task's next change is, so once that change is seen, the run's events
    read after it are complete."""
    position, seq = after
    while True:
        moves = await service.transitions(tenant_id, task_id)
        run_id = _run_at(moves, position)
        while run_id is not None:
            events = await records.list_events(tenant_id, run_id, after_seq=seq, limit=EVENTS_PAGE)
            for event in events:
                yield f"{position}.{event.seq}", event
                seq = event.seq
            if len(events) < EVENTS_PAGE:
                break
        if position < len(moves):
            position += 1
            if _run_at(moves, position) != run_id:  # a new run: its events from the first
                seq = 0
            yield str(position), moves[position - 1]
            continue
        if moves and moves[-1].status in FINAL_TASK_STATES:
            return
        await asyncio.sleep(POLL_S)


def _run_at(moves: list[TaskTransition], position: int) -> str | None:
    """The run going on at the ``position``-th change: the one its ``running`` change started,
    or, for a ``running`` change that starts none (a cancel requested), the run it is about."""
    for move in reversed(moves[: max(position, 0)]):
        if move.status != "running":
            return None
        run_id = move.detail.get("run_id")
        if isinstance(run_id, str):
            return run_id
    return None
