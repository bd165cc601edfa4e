"""``SqlWorkerRecords``: task workers' heartbeats (``base.WorkerRecords``) on the SQL record
store."""

from __future__ import annotations

from datetime import datetime

from shipyard.stores.records._database import Database
from shipyard.stores.records.base import WorkerRecord
from shipyard.stores.records.schema import workers

__all__ = ["SqlWorkerRecords"]


class SqlWorkerRecords:
    """``WorkerRecords`` over a shared ``Database``."""

    def __init__(self, db: Database) -> None:
        self._db = db
        upsert = db.insert(workers)
        self._upsert_worker_stmt = upsert.on_conflict_do_update(
            index_elements=["name"],
            set_={c.name: upsert.excluded[c.name] for c in workers.c if c.name != "name"},
        )

    async def heartbeat(self, worker: WorkerRecord) -> None:
        row = worker.model_dump()
        stmt = self._upsert_worker_stmt
        await self._db.write("heartbeat", lambda conn: conn.execute(stmt, row))

    async def list_workers(self, *, since: datetime | None = None) -> list[WorkerRecord]:
        query = workers.select().order_by(workers.c.last_seen.desc(), workers.c.name)
        if since is not None:
            query = query.where(workers.c.last_seen >= since)
        rows = await self._db.fetch("list_workers", query)
        return [WorkerRecord.model_validate(r) for r in rows]

    async def prune_workers(self, *, seen_before: datetime) -> int:
        stmt = workers.delete().where(workers.c.last_seen < seen_before)
        result = await self._db.write("prune_workers", lambda conn: conn.execute(stmt))
        return result.rowcount
