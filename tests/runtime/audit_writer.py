"""A process that writes audit rows, as a server or worker does: ``python -m
tests.runtime.audit_writer URL KEY COUNT`` (the store already migrated)."""

from __future__ import annotations

import asyncio
import sys

from shipyard.runtime.audit import AuditLog
from shipyard.stores.records.sql import SqlRecordStore
from shipyard.telemetry.audit import AuditEntry


async def main(url: str, key: str, count: int) -> None:
    store = SqlRecordStore.from_url(url)
    audit = AuditLog(store, key=key.encode(), flush_s=0, checkpoint_s=0.01)
    await audit.start()
    try:
        for i in range(count):
            audit.record(
                AuditEntry(
                    action="GET /v1/runs/{run_id}",
                    resource=f"/v1/runs/run_{i}",
                    outcome="ok",
                    status=200,
                    tenant_id="acme",
                    key_id="key_writer",
                    scope="read",
                    client="127.0.0.1",
                    detail={"n": i},
                )
            )
            await asyncio.sleep(0.001)  # the two writers interleave
    finally:
        await audit.close()
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
