"""``SqlTaskRecords``: tasks, their moves and their hand-over to the broker
(``base.TaskRecords``) on the SQL record store.

A task's creation and each of its moves are hot writes: fixed statements, built once (a
compare-and-set per combination of fields), compiled once for the driver (``Database.prepare``).
Where a statement can write in its ``WITH`` clause (PostgreSQL), the row and its move are one
statement, one round trip, and the moves of the moment share one (``task_moves``); elsewhere
(SQLite, on the loop: no round trips) two statements.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from shipyard.stores.records._database import Database, Insert
from shipyard.stores.records.base import Page, TaskRecord, TaskStatus, TaskTransition
from shipyard.stores.records.lifecycle_base import subject_of
from shipyard.stores.records.schema import task_transitions, tasks
from shipyard.stores.records.task_moves import MoveBatches

__all__ = ["IDS_PER_STATEMENT", "SqlTaskRecords"]

IDS_PER_STATEMENT = 1000
"""Task ids one ``IN`` list carries at most (PostgreSQL's driver takes 32,767 parameters a
statement)."""
_MOVE_KEYS = ("task_id", "status", "at", "detail")
_TASK_KEYS = (*TaskRecord.model_fields, "subject")
_PENDING = "handover_pending"

_TransitionKey = tuple[tuple[str, ...], tuple[str, ...], bool, bool]


class SqlTaskRecords:
    """``TaskRecords`` over a shared ``Database``."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._logged = db.writes_in_ctes
        once = db.insert(tasks).on_conflict_do_nothing(
            index_elements=["tenant_id", "idempotency_key"]
        )
        self._insert_task_stmt: sa.Executable = db.insert(tasks)
        self._insert_once_stmt: sa.Executable = once
        if self._logged:
            self._insert_task_stmt = _created_and_logged(db.insert(tasks))
            self._insert_once_stmt = _created_and_logged(once)
        self._insert_move_stmt = task_transitions.insert()
        self._moves = MoveBatches(db)
        self._transitions: dict[_TransitionKey, sa.Executable] = {}
        self._marks: dict[str, sa.Update] = {}  # hand-over notes, on an array of ids
        if db.array_params:
            for operation, column in (("handed_over", _PENDING), ("offering", "handover_at")):
                self._marks[operation] = _mark_any(column)
                db.prepare(self._marks[operation], keys=("ids", column))
        db.prepare(self._insert_move_stmt, keys=_MOVE_KEYS)
        returns = [tasks.c.id] if self._logged else []
        for stmt in (self._insert_task_stmt, self._insert_once_stmt):
            db.prepare(stmt, keys=_TASK_KEYS, returning=returns)

    async def create_task(self, task: TaskRecord) -> tuple[TaskRecord, bool]:
        """Idempotent per tenant on ``idempotency_key``: a second create returns the first."""
        row = task.model_dump() | {"subject": subject_of(task.metadata)}
        stmt = self._insert_task_stmt if task.idempotency_key is None else self._insert_once_stmt
        move = {"task_id": task.id, "status": task.status, "at": task.created_at, "detail": {}}

        async def work(conn: AsyncConnection) -> bool:
            if (await conn.execute(stmt, row)).rowcount == 0:
                return False
            await conn.execute(self._insert_move_stmt, move)
            return True

        if self._logged:  # the move is in the statement, and joins the others of the moment
            created = await self._moves.move("create_task", stmt, row, key="id") is not None
        else:
            created = await self._db.write("create_task", work)
        if created:
            return task, True
        existing = await self._db.fetch(
            "create_task",
            tasks.select().where(
                tasks.c.tenant_id == task.tenant_id,
                tasks.c.idempotency_key == task.idempotency_key,
            ),
        )
        return TaskRecord.model_validate(existing[0]), False

    async def handed_over(self, task_ids: Sequence[str]) -> None:
        await self._mark_handovers("handed_over", task_ids, handover_pending=False)

    async def offering(self, task_ids: Sequence[str]) -> None:
        await self._mark_handovers("offering", task_ids, handover_at=datetime.now(UTC))

    async def take_stale_handovers(
        self, *, stale_before: datetime, limit: int = 1000
    ) -> list[TaskRecord]:
        stale = (
            sa.select(tasks.c.id)
            .where(
                tasks.c.handover_pending.is_(True),
                sa.func.coalesce(tasks.c.handover_at, tasks.c.created_at) < stale_before,
            )
            .order_by(tasks.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL; a SQLite writer is alone anyway
        )
        stmt = (
            tasks.update()
            .where(tasks.c.id.in_(stale.scalar_subquery()))
            .values(handover_at=datetime.now(UTC))
            .returning(*tasks.c)
        )

        async def work(conn: AsyncConnection) -> list[TaskRecord]:
            rows = (await conn.execute(stmt)).mappings().all()
            return sorted((TaskRecord.model_validate(dict(r)) for r in rows), key=lambda t: t.id)

        return await self._db.write("take_stale_handovers", work)

    async def pending_handovers(
        self, *, after_id: str | None = None, limit: int = 1000
    ) -> list[TaskRecord]:
        query = (
            tasks.select()
            .where(tasks.c.handover_pending.is_(True))
            .order_by(tasks.c.id)
            .limit(limit)
        )
        if after_id is not None:
            query = query.where(tasks.c.id > after_id)
        rows = await self._db.fetch("pending_handovers", query)
        return [TaskRecord.model_validate(r) for r in rows]

    async def get_task(self, tenant_id: str, task_id: str) -> TaskRecord | None:
        query = tasks.select().where(tasks.c.tenant_id == tenant_id, tasks.c.id == task_id)
        rows = await self._db.fetch("get_task", query)
        return TaskRecord.model_validate(rows[0]) if rows else None

    async def list_tasks(
        self,
        tenant_id: str,
        *,
        status: TaskStatus | None = None,
        agent: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[TaskRecord]:
        query = tasks.select().where(tasks.c.tenant_id == tenant_id)
        if status is not None:
            query = query.where(tasks.c.status == status)
        if agent is not None:
            query = query.where(tasks.c.agent == agent)
        return await self._db.page("list_tasks", query, tasks.c.id, TaskRecord, limit, cursor)

    async def transition_task(
        self,
        tenant_id: str,
        task_id: str,
        status: TaskStatus,
        *,
        expected: frozenset[str],
        from_offer: str | None = None,
        count_attempt: bool = False,
        detail: dict[str, Any] | None = None,
        **fields: Any,
    ) -> TaskRecord | None:
        """A compare-and-set on the status, and the move recorded, in one transaction."""
        now = datetime.now(UTC)
        stmt = self._transition_stmt(
            tuple(sorted(fields)), tuple(sorted(expected)), from_offer is not None, count_attempt
        )
        params = {
            "w_tenant_id": tenant_id,
            "w_id": task_id,
            "v_status": status,
            "v_updated_at": now,
            **{f"v_{name}": value for name, value in fields.items()},
        }
        if from_offer is not None:
            params["w_offer"] = from_offer
        if self._logged:  # the move is in the statement, and joins the others of the moment
            params["m_detail"] = detail or {}
            moved = await self._moves.move("transition_task", stmt, params)
            return None if moved is None else TaskRecord.model_validate(moved)
        move = {"task_id": task_id, "status": status, "at": now, "detail": detail or {}}

        async def work(conn: AsyncConnection) -> TaskRecord | None:
            row = (await conn.execute(stmt, params)).mappings().first()
            if row is None:
                return None
            await conn.execute(self._insert_move_stmt, move)
            return TaskRecord.model_validate(dict(row))

        return await self._db.write("transition_task", work)

    async def task_transitions(self, tenant_id: str, task_id: str) -> list[TaskTransition]:
        if await self.get_task(tenant_id, task_id) is None:
            return []
        query = (
            task_transitions.select()
            .where(task_transitions.c.task_id == task_id)
            .order_by(task_transitions.c.id)
        )
        rows = await self._db.fetch("task_moves", query)
        return [TaskTransition.model_validate(r) for r in rows]

    async def _mark_handovers(self, operation: str, task_ids: Sequence[str], **values: Any) -> None:
        """On the pending ones of ``task_ids``, in one transaction (``IDS_PER_STATEMENT`` a
        statement; where the ids can be one array parameter, one prepared statement)."""
        marks = self._marks.get(operation)
        if marks is not None:
            if task_ids:
                params = {"ids": list(task_ids), **values}
                await self._db.write(operation, lambda conn: conn.execute(marks, params))
            return
        step = IDS_PER_STATEMENT
        chunks = [list(task_ids[i : i + step]) for i in range(0, len(task_ids), step)]
        if not chunks:
            return
        pending = tasks.c.handover_pending.is_(True)

        async def work(conn: AsyncConnection) -> None:
            for chunk in chunks:
                stmt = tasks.update().where(tasks.c.id.in_(chunk), pending).values(**values)
                await conn.execute(stmt)

        await self._db.write(operation, work)

    def _transition_stmt(
        self, fields: tuple[str, ...], expected: tuple[str, ...], from_offer: bool, count: bool
    ) -> sa.Executable:
        """The compare-and-set of a task's status from one of ``expected`` (and, with
        ``from_offer``, from its offer or none) that also sets ``fields`` (and with ``count``,
        adds one to ``attempts``): built once per combination, with bound parameters, so
        SQLAlchemy compiles it once (building a statement per call cost more than running it;
        ``IN`` would be an expanding parameter, rendered again on every call)."""
        key = (fields, expected, from_offer, count)
        stmt = self._transitions.get(key)
        if stmt is None:
            stmt = _transition(*key)
            columns = ("status", "updated_at", *fields)
            keys = ["w_tenant_id", "w_id", *(f"v_{c}" for c in columns)]
            if from_offer:
                keys.append("w_offer")
            if self._logged:
                stmt = _moved_and_logged(stmt)
                keys.append("m_detail")
            self._transitions[key] = stmt
            self._db.prepare(stmt, keys=keys, returning=list(tasks.c))
        return stmt


def _transition(
    fields: tuple[str, ...], expected: tuple[str, ...], from_offer: bool, count: bool
) -> sa.Update:
    """The statement of ``SqlTaskRecords._transition_stmt``."""
    columns = ("status", "updated_at", *fields)
    where = [
        tasks.c.tenant_id == sa.bindparam("w_tenant_id"),
        tasks.c.id == sa.bindparam("w_id"),
        sa.or_(sa.false(), *(tasks.c.status == status for status in expected)),
    ]
    if from_offer:
        offer = sa.bindparam("w_offer", type_=tasks.c.offer.type)
        where.append(sa.or_(tasks.c.offer.is_(None), tasks.c.offer == offer))
    values: dict[str, Any] = {c: sa.bindparam(f"v_{c}", type_=tasks.c[c].type) for c in columns}
    if count:
        values["attempts"] = tasks.c.attempts + 1
    return tasks.update().where(*where).values(values).returning(*tasks.c)


def _created_and_logged(insert: Insert) -> sa.Select[Any]:
    """``insert`` (of every column of a task) and, if it inserted the task, its first move, in
    one statement; returns the task's id (no row: not inserted)."""
    values = {c: sa.bindparam(c, type_=tasks.c[c].type) for c in _TASK_KEYS}
    created = insert.values(values).returning(tasks.c.id, tasks.c.status, tasks.c.created_at)
    row = created.cte("created")
    no_detail = sa.literal({}, type_=task_transitions.c.detail.type)
    log = _log_move(sa.select(row.c.id, row.c.status, row.c.created_at, no_detail))
    return sa.select(row.c.id).add_cte(log)


def _moved_and_logged(update: sa.Update) -> sa.Select[Any]:
    """``update`` (returning every column of the task) and, if it moved the task, the move (its
    detail is ``m_detail``), in one statement; returns the task's row."""
    row = update.cte("moved")
    detail = sa.bindparam("m_detail", type_=task_transitions.c.detail.type)
    log = _log_move(sa.select(row.c.id, row.c.status, row.c.updated_at, detail))
    return sa.select(row).add_cte(log)


def _log_move(moves: sa.Select[Any]) -> sa.CTE:
    return task_transitions.insert().from_select(list(_MOVE_KEYS), moves).cte("logged")


def _mark_any(column: str) -> sa.Update:
    """Set ``column`` on the pending tasks among the array ``ids``."""
    ids = sa.bindparam("ids", type_=sa.ARRAY(sa.String))
    return (
        tasks.update()
        .where(tasks.c.id == sa.any_(ids), tasks.c.handover_pending.is_(True))
        .values({column: sa.bindparam(column, type_=tasks.c[column].type)})
    )
