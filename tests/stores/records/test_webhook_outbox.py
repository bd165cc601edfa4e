"""The webhook outbox role of the record store contract, on every backend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from shipyard.stores.records.base import WebhookDelivery
from shipyard.stores.records.sql import PRUNE_BATCH, SqlRecordStore

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def delivery(task_id: str, **fields: object) -> WebhookDelivery:
    values: dict[str, object] = {
        "tenant_id": "t1",
        "url": "http://127.0.0.1:9/hook",
        "event_id": f"ev-{task_id}",
        "body": '{"id": 1}',
        "next_at": T0,
        "created_at": T0,
        "updated_at": T0,
    }
    return WebhookDelivery.model_validate({"task_id": task_id, **values, **fields})


async def test_one_delivery_per_task(store: SqlRecordStore) -> None:
    assert await store.add_webhook(delivery("a"))
    assert not await store.add_webhook(delivery("a", url="http://elsewhere/"))
    [claimed] = await store.claim_webhooks(T0, lease_s=30, limit=10)
    assert (claimed.url, claimed.attempts, claimed.body) == (
        "http://127.0.0.1:9/hook",
        1,
        '{"id": 1}',
    )


async def test_a_claim_leases_and_only_one_claimer_wins(store: SqlRecordStore) -> None:
    for n in range(5):
        await store.add_webhook(delivery(f"t{n}"))
    await store.add_webhook(delivery("later", next_at=T0 + timedelta(minutes=1)))
    first, second = await asyncio.gather(
        store.claim_webhooks(T0, lease_s=30, limit=10),
        store.claim_webhooks(T0, lease_s=30, limit=10),
    )
    claimed = sorted(d.task_id for d in [*first, *second])
    assert claimed == [f"t{n}" for n in range(5)]  # each once; "later" is not due
    assert await store.claim_webhooks(T0 + timedelta(seconds=10), lease_s=30, limit=10) == []
    # a lease that ran out (its worker died mid-attempt) is claimed again, attempt counted
    again = await store.claim_webhooks(T0 + timedelta(seconds=31), lease_s=30, limit=10)
    assert sorted(d.task_id for d in again) == [f"t{n}" for n in range(5)]
    assert {d.attempts for d in again} == {2}


async def test_settling_schedules_the_next_attempt_or_ends_it(store: SqlRecordStore) -> None:
    await store.add_webhook(delivery("retry"))
    await store.add_webhook(delivery("done"))
    await store.claim_webhooks(T0, lease_s=30, limit=10)
    await store.settle_webhook("retry", status="pending", next_at=T0 + timedelta(seconds=5))
    await store.settle_webhook("done", status="delivered", next_at=T0)
    assert await store.claim_webhooks(T0 + timedelta(seconds=1), lease_s=30, limit=10) == []
    [due] = await store.claim_webhooks(T0 + timedelta(seconds=5), lease_s=30, limit=10)
    assert (due.task_id, due.attempts) == ("retry", 2)


async def test_pruning_deletes_only_settled_deliveries_older_than_the_cutoff(
    store: SqlRecordStore,
) -> None:
    cutoff = T0 + timedelta(days=7)
    old, recent = T0, cutoff + timedelta(minutes=1)
    await store.add_webhook(delivery("old-delivered", status="delivered", updated_at=old))
    await store.add_webhook(delivery("old-failed", status="failed", updated_at=old))
    await store.add_webhook(delivery("at-cutoff", status="delivered", updated_at=cutoff))
    await store.add_webhook(delivery("recent-delivered", status="delivered", updated_at=recent))
    await store.add_webhook(delivery("recent-failed", status="failed", updated_at=recent))
    await store.add_webhook(delivery("old-pending", updated_at=old))  # due, never claimed
    await store.add_webhook(delivery("old-leased", next_at=T0 - timedelta(minutes=1)))
    [leased] = await store.claim_webhooks(T0, lease_s=30, limit=1)  # an attempt under way
    assert leased.task_id == "old-leased"

    assert await store.prune_webhooks(settled_before=cutoff) == 2
    assert await store.prune_webhooks(settled_before=cutoff) == 0
    # a task's row is gone exactly when it can be added again
    kept = {"at-cutoff", "recent-delivered", "recent-failed", "old-pending", "old-leased"}
    for task_id in [*kept, "old-delivered", "old-failed"]:
        added = await store.add_webhook(delivery(task_id, next_at=T0 + timedelta(days=30)))
        assert added == (task_id not in kept), task_id
    # pending deliveries stay however old, and are still claimed when due
    due = await store.claim_webhooks(T0 + timedelta(minutes=1), lease_s=30, limit=10)
    assert sorted(d.task_id for d in due) == ["old-leased", "old-pending"]


async def test_pruning_a_backlog_larger_than_one_batch(store: SqlRecordStore) -> None:
    backlog = PRUNE_BATCH * 2 + 3
    await asyncio.gather(
        *(store.add_webhook(delivery(f"t{n}", status="delivered")) for n in range(backlog))
    )
    await store.add_webhook(delivery("pending"))
    assert await store.prune_webhooks(settled_before=T0 + timedelta(seconds=1)) == backlog
    assert [d.task_id for d in await store.claim_webhooks(T0, lease_s=30, limit=10)] == ["pending"]
