"""``MoveBatches``: on PostgreSQL, the task moves made while a write waits go into that write
as one pipelined statement.

Each move is a round trip (a compare-and-set ``UPDATE ... RETURNING`` with its log row), and the
group commit runs the writes of a transaction one after another: a worker claiming and settling
tens of tasks at once spent a round trip, and asyncpg's per-call work, on each. Moves of one
kind (one statement: every claim, every ``succeeded``) made while their write has not started
yet join it; it runs them all as one ``fetchmany`` (one Bind/Execute per move, one round trip),
and each caller gets its own task's row. A task's creation (its first move, ``queued``) is
batched the same way on a server acknowledging many at once.

The semantics are those of one write per move: each compare-and-set is its own statement, in
order, in one transaction; two moves of one task never share a write (the second starts
another); if the write is refused for its data (one move's), each of its moves runs again
alone, so only that one is refused; and a batch is closed once its write is done, whether it
ran or not (a lost connection), so no move joins a write that is over.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shipyard.errors import StoreRejected
from shipyard.stores.records._database import Database

__all__ = ["MoveBatches"]

Row = dict[str, Any]


class _Batch:
    """The moves of one statement that wait for the same write."""

    write: asyncio.Future[dict[str, Row]]  # its rows by task id, once committed

    def __init__(self, stmt: Any) -> None:
        self.stmt = stmt
        self.params: list[dict[str, Any]] = []
        self.ids: set[str] = set()


class MoveBatches:
    """Task moves (``SqlTaskRecords.transition_task``, ``create_task``) batched per statement
    (module docstring); the statements return the task's row (at least its ``id``)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._open: dict[int, _Batch] = {}  # by the statement's id: moves may still join

    async def move(
        self, operation: str, stmt: Any, params: dict[str, Any], *, key: str = "w_id"
    ) -> Row | None:
        """The moved task's row (None: the compare-and-set did not match), once committed;
        ``params[key]`` is the task's id; ``operation`` names the write (``Database.write``)."""
        task_id = params[key]
        batch = self._open.get(id(stmt))
        if batch is None or batch.write.done() or task_id in batch.ids:
            batch = self._start(operation, stmt)
        batch.params.append(params)
        batch.ids.add(task_id)
        try:
            rows = await asyncio.shield(batch.write)
        except StoreRejected:
            if len(batch.params) == 1:
                raise
            return await self._db.write(operation, lambda conn: _one(conn, stmt, params))
        return rows.get(task_id)

    def _start(self, operation: str, stmt: Any) -> _Batch:
        batch = self._open[id(stmt)] = _Batch(stmt)
        batch.write = asyncio.ensure_future(
            self._db.write(operation, lambda conn: self._run(conn, batch))
        )
        batch.write.add_done_callback(lambda write: self._done(batch, write))
        return batch

    async def _run(self, conn: Any, batch: _Batch) -> dict[str, Row]:
        self._close(batch)  # running: later moves go in another write
        if len(batch.params) == 1:
            row = await _one(conn, batch.stmt, batch.params[0])
            return {} if row is None else {row["id"]: row}
        rows = (await conn.execute(batch.stmt, batch.params)).mappings().all()
        return {row["id"]: row for row in rows}

    def _close(self, batch: _Batch) -> None:
        if self._open.get(id(batch.stmt)) is batch:
            del self._open[id(batch.stmt)]

    def _done(self, batch: _Batch, write: asyncio.Future[Any]) -> None:
        """Closed even if it never ran (its transaction could not begin), and its error
        retrieved (its callers may all have been cancelled)."""
        self._close(batch)
        if not write.cancelled():
            write.exception()


async def _one(conn: Any, stmt: Any, params: dict[str, Any]) -> Row | None:
    row: Row | None = (await conn.execute(stmt, params)).mappings().first()
    return row
