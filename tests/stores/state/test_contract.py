"""The state store contract: the same assertions on every backend (see conftest ``store``).

Expiry tests use TTLs of a fraction of a second and wait past them; no timing is asserted
beyond "expired after its TTL" and "alive well within it".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shipyard.errors import StoreError
from shipyard.stores.state.base import Lease, StateStore

SHORT = 0.2  # a TTL that has passed after WAIT
WAIT = 0.35
LONG = 30.0  # a TTL that does not pass during a test


async def next_message(messages: AsyncIterator[bytes]) -> bytes:
    return await asyncio.wait_for(anext(messages), timeout=5)


# -- lifecycle and values -----------------------------------------------------------------------


async def test_ping(store: StateStore) -> None:
    await store.ping()


async def test_set_get_delete(store: StateStore) -> None:
    assert await store.get("a") is None
    await store.set("a", b"1", ttl_s=LONG)
    assert await store.get("a") == b"1"
    await store.set("a", b"\x00binary\xff", ttl_s=LONG)
    assert await store.get("a") == b"\x00binary\xff"
    await store.set("b", b"", ttl_s=LONG)
    assert await store.get("b") == b""
    assert await store.delete("a", "b", "missing") == 2
    assert await store.get("a") is None
    assert await store.delete("a") == 0
    assert await store.delete() == 0


async def test_values_expire(store: StateStore) -> None:
    await store.set("short", b"x", ttl_s=SHORT)
    await store.set("long", b"y", ttl_s=LONG)
    await asyncio.sleep(WAIT)
    assert await store.get("short") is None
    assert await store.ttl("short") is None
    assert await store.delete("short") == 0
    assert await store.get("long") == b"y"


async def test_ttl_reports_time_left(store: StateStore) -> None:
    assert await store.ttl("missing") is None
    await store.set("k", b"v", ttl_s=LONG)
    left = await store.ttl("k")
    assert left is not None
    assert 0 < left <= LONG


async def test_expire_renews(store: StateStore) -> None:
    assert not await store.expire("missing", LONG)
    await store.set("k", b"v", ttl_s=SHORT)
    assert await store.expire("k", LONG)
    await asyncio.sleep(WAIT)
    assert await store.get("k") == b"v"
    assert await store.expire("k", SHORT)  # shortening works too
    await asyncio.sleep(WAIT)
    assert await store.get("k") is None
    assert not await store.expire("k", LONG)


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan")])
async def test_ttl_must_be_positive_and_finite(store: StateStore, ttl: float) -> None:
    with pytest.raises(ValueError, match="TTL"):
        await store.set("k", b"v", ttl_s=ttl)
    with pytest.raises(ValueError, match="TTL"):
        await store.append("l", b"v", ttl_s=ttl)


async def test_values_are_bytes(store: StateStore) -> None:
    with pytest.raises(TypeError, match="bytes"):
        await store.set("k", "text", ttl_s=LONG)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes"):
        await store.append("l", b"ok", "text", ttl_s=LONG)  # type: ignore[arg-type]
    assert await store.length("l") == 0


# -- lists --------------------------------------------------------------------------------------


async def test_append_range_length(store: StateStore) -> None:
    assert await store.range("h") == []
    assert await store.length("h") == 0
    assert await store.append("h", b"a", ttl_s=LONG) == 1
    assert await store.append("h", b"b", b"c", b"d", ttl_s=LONG) == 4
    assert await store.range("h") == [b"a", b"b", b"c", b"d"]
    assert await store.length("h") == 4
    assert await store.range("h", 1, 2) == [b"b", b"c"]
    assert await store.range("h", -2) == [b"c", b"d"]
    assert await store.range("h", 0, -3) == [b"a", b"b"]
    assert await store.range("h", -100, 100) == [b"a", b"b", b"c", b"d"]
    assert await store.range("h", 3, 1) == []
    assert await store.range("h", 4) == []


async def test_append_nothing_keeps_the_list(store: StateStore) -> None:
    assert await store.append("h", ttl_s=LONG) == 0
    assert await store.length("h") == 0
    await store.append("h", b"a", ttl_s=LONG)
    assert await store.append("h", ttl_s=LONG) == 1


async def test_lists_expire_and_appends_renew(store: StateStore) -> None:
    await store.append("gone", b"a", b"b", ttl_s=SHORT)
    await store.append("kept", b"a", ttl_s=SHORT)
    await store.append("kept", b"b", ttl_s=LONG)  # sliding expiry: the last append's TTL
    await asyncio.sleep(WAIT)
    assert await store.range("gone") == []
    assert await store.length("gone") == 0
    assert await store.range("kept") == [b"a", b"b"]
    assert await store.append("gone", b"new", ttl_s=LONG) == 1
    assert await store.range("gone") == [b"new"]


async def test_expire_and_delete_apply_to_lists(store: StateStore) -> None:
    await store.append("h", b"a", ttl_s=SHORT)
    assert await store.expire("h", LONG)
    await asyncio.sleep(WAIT)
    assert await store.range("h") == [b"a"]
    assert await store.delete("h") == 1
    assert await store.range("h") == []


async def test_a_key_is_a_value_or_a_list(store: StateStore) -> None:
    await store.set("v", b"1", ttl_s=LONG)
    await store.append("l", b"a", ttl_s=LONG)
    with pytest.raises(StoreError):
        await store.append("v", b"x", ttl_s=LONG)
    with pytest.raises(StoreError):
        await store.get("l")
    with pytest.raises(StoreError):
        await store.range("v")
    assert await store.get("v") == b"1"
    await store.set("l", b"now a value", ttl_s=LONG)  # set replaces whatever was there
    assert await store.get("l") == b"now a value"


async def test_a_failed_append_leaves_the_ttl_alone(store: StateStore) -> None:
    await store.set("v", b"1", ttl_s=LONG)
    with pytest.raises(StoreError):
        await store.append("v", b"x", ttl_s=SHORT)
    with pytest.raises(StoreError):
        await store.append("v", ttl_s=SHORT)
    await asyncio.sleep(WAIT)
    assert await store.get("v") == b"1"


# -- compare-and-set and append_if --------------------------------------------------------------


async def test_compare_and_set(store: StateStore) -> None:
    assert await store.compare_and_set("v", None, b"1", ttl_s=LONG)
    assert not await store.compare_and_set("v", None, b"x", ttl_s=LONG)
    assert await store.compare_and_set("v", b"1", b"2", ttl_s=LONG)
    assert not await store.compare_and_set("v", b"1", b"x", ttl_s=LONG)
    assert await store.get("v") == b"2"


async def test_compare_and_set_sees_an_expired_key_as_absent(store: StateStore) -> None:
    await store.set("v", b"old", ttl_s=SHORT)
    await asyncio.sleep(WAIT)
    assert not await store.compare_and_set("v", b"old", b"x", ttl_s=LONG)
    assert await store.compare_and_set("v", None, b"new", ttl_s=SHORT)
    await asyncio.sleep(WAIT)
    assert await store.get("v") is None  # the new value has the new TTL


async def test_append_if_appends_and_bumps_the_guard(store: StateStore) -> None:
    assert await store.append_if(
        "h", [b"t1a", b"t1b"], guard_key="ver", expected=None, new=b"1", ttl_s=LONG
    )
    assert await store.append_if("h", [b"t2"], guard_key="ver", expected=b"1", new=b"2", ttl_s=LONG)
    assert await store.range("h") == [b"t1a", b"t1b", b"t2"]
    assert await store.get("ver") == b"2"


async def test_append_if_does_nothing_on_a_stale_guard(store: StateStore) -> None:
    await store.append("h", b"a", ttl_s=LONG)
    await store.set("ver", b"5", ttl_s=LONG)
    assert not await store.append_if(
        "h", [b"x"], guard_key="ver", expected=b"4", new=b"5", ttl_s=LONG
    )
    assert not await store.append_if(
        "h", [b"x"], guard_key="ver", expected=None, new=b"1", ttl_s=LONG
    )
    assert await store.range("h") == [b"a"]
    assert await store.get("ver") == b"5"


async def test_append_if_on_a_value_key_changes_nothing(store: StateStore) -> None:
    await store.set("not-a-list", b"v", ttl_s=LONG)
    with pytest.raises(StoreError):
        await store.append_if(
            "not-a-list", [b"x"], guard_key="ver", expected=None, new=b"1", ttl_s=LONG
        )
    assert await store.get("ver") is None
    assert await store.get("not-a-list") == b"v"


async def test_append_if_renews_both_ttls(store: StateStore) -> None:
    await store.append_if("h", [b"a"], guard_key="ver", expected=None, new=b"1", ttl_s=SHORT)
    await store.append_if("h", [], guard_key="ver", expected=b"1", new=b"2", ttl_s=LONG)
    await asyncio.sleep(WAIT)
    assert await store.range("h") == [b"a"]
    assert await store.get("ver") == b"2"


async def test_append_if_under_contention_has_exactly_one_winner(store: StateStore) -> None:
    await store.set("ver", b"7", ttl_s=LONG)

    async def turn(i: int) -> bool:
        items = [f"{i}:user".encode(), f"{i}:assistant".encode()]
        return await store.append_if(
            "h", items, guard_key="ver", expected=b"7", new=b"8", ttl_s=LONG
        )

    results = await asyncio.gather(*(turn(i) for i in range(20)))
    assert results.count(True) == 1
    winner = results.index(True)
    assert await store.range("h") == [f"{winner}:user".encode(), f"{winner}:assistant".encode()]
    assert await store.get("ver") == b"8"


async def test_compare_and_set_under_contention_has_exactly_one_winner(store: StateStore) -> None:
    results = await asyncio.gather(
        *(store.compare_and_set("v", None, str(i).encode(), ttl_s=LONG) for i in range(20))
    )
    assert results.count(True) == 1
    assert await store.get("v") == str(results.index(True)).encode()


# -- leases -------------------------------------------------------------------------------------


async def test_a_lease_is_exclusive(store: StateStore) -> None:
    lease = await store.acquire_lease("session:1", "replica-a", ttl_s=LONG)
    assert lease is not None
    assert (lease.name, lease.owner) == ("session:1", "replica-a")
    assert lease.token >= 1
    assert await store.acquire_lease("session:1", "replica-b", ttl_s=LONG) is None
    assert await store.acquire_lease("session:1", "replica-a", ttl_s=LONG) is None
    assert await store.lease_is_current(lease)
    other = await store.acquire_lease("session:2", "replica-b", ttl_s=LONG)
    assert other is not None


async def test_tokens_increase_across_acquisitions(store: StateStore) -> None:
    tokens = []
    for owner in ["a", "b", "a", "c"]:
        lease = await store.acquire_lease("job", owner, ttl_s=LONG)
        assert lease is not None
        tokens.append(lease.token)
        assert await store.release_lease(lease)
        assert not await store.lease_is_current(lease)
    assert tokens == sorted(set(tokens))


async def test_only_the_holder_releases(store: StateStore) -> None:
    lease = await store.acquire_lease("job", "a", ttl_s=LONG)
    assert lease is not None
    impostors = [
        Lease("job", "b", lease.token, lease.expires_at),
        Lease("job", "a", lease.token + 1, lease.expires_at),
        Lease("job", "a", lease.token - 1, lease.expires_at),
    ]
    for impostor in impostors:
        assert not await store.release_lease(impostor)
        assert not await store.lease_is_current(impostor)
        assert await store.renew_lease(impostor, ttl_s=LONG) is None
    assert await store.lease_is_current(lease)
    assert await store.release_lease(lease)
    assert not await store.release_lease(lease)
    successor = await store.acquire_lease("job", "b", ttl_s=LONG)
    assert successor is not None
    assert successor.token > lease.token


async def test_an_expired_lease_goes_to_the_next_owner_with_a_larger_token(
    store: StateStore,
) -> None:
    first = await store.acquire_lease("job", "a", ttl_s=SHORT)
    assert first is not None
    await asyncio.sleep(WAIT)
    assert not await store.lease_is_current(first)
    second = await store.acquire_lease("job", "b", ttl_s=LONG)
    assert second is not None
    assert second.token > first.token
    assert await store.renew_lease(first, ttl_s=LONG) is None  # the paused holder finds out
    assert not await store.release_lease(first)
    assert await store.lease_is_current(second)


async def test_renewing_keeps_the_lease(store: StateStore) -> None:
    lease = await store.acquire_lease("job", "a", ttl_s=SHORT)
    assert lease is not None
    renewed = await store.renew_lease(lease, ttl_s=LONG)
    assert renewed is not None
    assert (renewed.token, renewed.owner) == (lease.token, lease.owner)
    assert renewed.expires_at > lease.expires_at
    await asyncio.sleep(WAIT)
    assert await store.lease_is_current(lease)
    assert await store.acquire_lease("job", "b", ttl_s=LONG) is None


async def test_concurrent_acquisitions_have_one_winner(store: StateStore) -> None:
    leases = await asyncio.gather(
        *(store.acquire_lease("job", f"owner-{i}", ttl_s=LONG) for i in range(20))
    )
    assert sum(lease is not None for lease in leases) == 1


# -- lease queues -------------------------------------------------------------------------------


async def test_tickets_increase_in_the_order_they_are_taken(store: StateStore) -> None:
    tickets = [await store.join_queue("job", ticket_ttl_s=LONG) for _ in range(5)]
    assert tickets == sorted(set(tickets))
    other = await store.join_queue("other-job", ticket_ttl_s=LONG)
    assert other >= 1


async def test_a_queued_lease_goes_to_the_waiters_in_the_order_they_joined(
    store: StateStore,
) -> None:
    holder = await store.acquire_lease("job", "holder", ttl_s=LONG)
    assert holder is not None
    owners = ["w1", "w2", "w3"]
    tickets = {owner: await store.join_queue("job", ticket_ttl_s=LONG) for owner in owners}
    assert await store.release_lease(holder)
    assert await store.acquire_lease("job", "newcomer", ttl_s=LONG) is None  # no jumping in
    served = []
    while len(served) < len(owners):
        for owner in reversed(owners):  # the later waiters ask first: they still wait
            if owner in served:
                continue
            lease = await store.acquire_lease_in_turn(
                "job", owner, tickets[owner], ttl_s=LONG, ticket_ttl_s=LONG
            )
            if lease is not None:
                served.append(owner)
                assert await store.acquire_lease("job", "newcomer", ttl_s=LONG) is None
                assert await store.release_lease(lease)
    assert served == owners
    assert await store.acquire_lease("job", "newcomer", ttl_s=LONG) is not None  # queue empty


async def test_the_head_of_the_queue_waits_for_the_holder(store: StateStore) -> None:
    holder = await store.acquire_lease("job", "holder", ttl_s=LONG)
    assert holder is not None
    ticket = await store.join_queue("job", ticket_ttl_s=LONG)
    assert (
        await store.acquire_lease_in_turn("job", "w", ticket, ttl_s=LONG, ticket_ttl_s=LONG) is None
    )
    await store.release_lease(holder)
    lease = await store.acquire_lease_in_turn("job", "w", ticket, ttl_s=LONG, ticket_ttl_s=LONG)
    assert lease is not None and lease.token > holder.token and lease.owner == "w"
    assert await store.lease_is_current(lease)


async def test_a_waiter_that_leaves_or_stops_refreshing_blocks_nobody(store: StateStore) -> None:
    gone = await store.join_queue("job", ticket_ttl_s=LONG)
    crashed = await store.join_queue("job", ticket_ttl_s=SHORT)
    waiting = await store.join_queue("job", ticket_ttl_s=LONG)
    assert await store.leave_queue("job", gone)
    assert not await store.leave_queue("job", gone)
    assert (
        await store.acquire_lease_in_turn("job", "w", waiting, ttl_s=LONG, ticket_ttl_s=LONG)
        is None
    )
    await asyncio.sleep(WAIT)  # the crashed waiter's ticket expires
    lease = await store.acquire_lease_in_turn("job", "w", waiting, ttl_s=LONG, ticket_ttl_s=LONG)
    assert lease is not None
    assert not await store.leave_queue("job", crashed)


async def test_expired_tickets_do_not_hold_back_a_newcomer(store: StateStore) -> None:
    await store.join_queue("job", ticket_ttl_s=SHORT)
    assert await store.acquire_lease("job", "newcomer", ttl_s=LONG) is None
    await asyncio.sleep(WAIT)
    assert await store.acquire_lease("job", "newcomer", ttl_s=LONG) is not None


async def test_refreshing_keeps_a_ticket_and_a_late_one_keeps_its_place(store: StateStore) -> None:
    first = await store.join_queue("job", ticket_ttl_s=SHORT)
    second = await store.join_queue("job", ticket_ttl_s=LONG)
    holder = await store.acquire_lease("holder-job", "h", ttl_s=LONG)  # another name: no effect
    assert holder is not None
    assert (
        await store.acquire_lease_in_turn("job", "w2", second, ttl_s=LONG, ticket_ttl_s=LONG)
        is None
    )
    await asyncio.sleep(WAIT)  # the first ticket expired: its waiter was paused, not gone
    refreshed = await store.acquire_lease_in_turn("job", "w1", first, ttl_s=LONG, ticket_ttl_s=LONG)
    assert refreshed is not None  # back in its place, at the head, and the lease was free
    await store.release_lease(refreshed)
    assert (
        await store.acquire_lease_in_turn("job", "w2", second, ttl_s=LONG, ticket_ttl_s=LONG)
        is not None
    )


async def test_waiters_racing_are_served_one_at_a_time_in_order(store: StateStore) -> None:
    holder = await store.acquire_lease("job", "holder", ttl_s=LONG)
    assert holder is not None
    tickets = [await store.join_queue("job", ticket_ttl_s=LONG) for _ in range(10)]
    await store.release_lease(holder)
    served: list[int] = []

    async def wait(ticket: int) -> None:
        while True:
            lease = await store.acquire_lease_in_turn(
                "job", f"w{ticket}", ticket, ttl_s=LONG, ticket_ttl_s=LONG
            )
            if lease is not None:
                served.append(ticket)
                await asyncio.sleep(0.01)
                assert await store.release_lease(lease)
                return
            await asyncio.sleep(0.005)

    await asyncio.gather(*(wait(t) for t in reversed(tickets)))
    assert served == tickets


# -- channels -----------------------------------------------------------------------------------


async def test_a_subscriber_gets_what_is_published_after_it_subscribed(
    store: StateStore,
) -> None:
    await store.publish("events", b"before")
    async with store.subscribe("events") as messages:
        assert await store.publish("events", b"m1") == 1
        await store.publish("other", b"elsewhere")
        await store.publish("events", b"m2")
        assert await next_message(messages) == b"m1"
        assert await next_message(messages) == b"m2"


async def test_every_subscriber_gets_every_message(store: StateStore) -> None:
    async with store.subscribe("events") as one, store.subscribe("events") as two:
        assert await store.publish("events", b"m") == 2
        assert await next_message(one) == b"m"
        assert await next_message(two) == b"m"


async def test_leaving_the_subscription_unsubscribes(store: StateStore) -> None:
    async with store.subscribe("events") as messages:
        await store.publish("events", b"m")
        assert await next_message(messages) == b"m"
    assert await store.publish("events", b"nobody") == 0
    async with store.subscribe("events") as again:
        await store.publish("events", b"fresh")
        assert await next_message(again) == b"fresh"


async def test_a_subscriber_can_be_consumed_by_a_task(store: StateStore) -> None:
    received: list[bytes] = []

    async def consume(messages: AsyncIterator[bytes]) -> None:
        async for message in messages:
            received.append(message)
            if message == b"last":
                return

    async with store.subscribe("events") as messages:
        task = asyncio.create_task(consume(messages))
        for message in [b"a", b"b", b"last"]:
            await store.publish("events", message)
        await asyncio.wait_for(task, timeout=5)
    assert received == [b"a", b"b", b"last"]


async def collect(messages: AsyncIterator[bytes]) -> list[bytes]:
    return [message async for message in messages]


async def test_leaving_ends_an_iteration_waiting_in_another_task(store: StateStore) -> None:
    async with store.subscribe("events") as messages:
        waiting = asyncio.create_task(collect(messages))
        await asyncio.sleep(0.05)
    assert await asyncio.wait_for(waiting, timeout=5) == []
    assert await collect(messages) == []


async def test_closing_the_store_ends_subscriptions(store: StateStore) -> None:
    async with store.subscribe("events") as messages:
        waiting = asyncio.create_task(collect(messages))
        await asyncio.sleep(0.05)
        await store.close()
        assert await asyncio.wait_for(waiting, timeout=5) == []
    await store.close()  # idempotent
