"""The SQS broker on FIFO queues (``sqs://<prefix>?fifo=true``, on moto's server): a message
group — a session's turns — runs one message at a time, in order, a delayed retry included
(by visibility: FIFO queues refuse per-message delays); a hand-over sent twice is stored once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from shipyard.errors import ConfigError
from shipyard.runtime.tasks import _message
from shipyard.stores.broker.base import GROUP_HEADER, Delivery, TaskMessage
from shipyard.stores.broker.sqs import SqsBroker
from shipyard.stores.records.base import TaskRecord
from shipyard.telemetry.tracecontext import TraceParent
from tests.stores.broker.conftest import SQS_URL, Backend, delete_sqs_queues, sqs_backend

pytestmark = pytest.mark.sqs


@pytest.fixture
async def fifo() -> AsyncIterator[SqsBroker]:
    backend: Backend = await sqs_backend()
    await backend.close()
    broker = SqsBroker.from_url(
        f"sqs://{backend.prefix}?fifo=true&wait_s=1&visibility_s=5",
        region="us-east-1",
        endpoint=SQS_URL,
        refresh_s=0.5,
    )
    try:
        yield broker
    finally:
        await broker.close()
        await delete_sqs_queues(backend.prefix)


def turn(task_id: str, session: str | None) -> TaskMessage:
    headers = {GROUP_HEADER: session} if session else {}
    return TaskMessage(task_id=task_id, tenant_id="acme", agent="echo", body=b"{}", headers=headers)


async def next_delivery(deliveries: AsyncIterator[Delivery], within_s: float = 10) -> Delivery:
    return await asyncio.wait_for(anext(deliveries), within_s)


def test_the_fifo_option() -> None:
    broker = SqsBroker.from_url("sqs://p?fifo=true", region="us-east-1")
    assert broker.names.work("tasks", 0) == "p-tasks-p0.fifo"
    assert broker.names.dead("tasks") == "p-tasks-dead.fifo"
    assert broker.names.priority_of("tasks", "p-tasks-p3.fifo") == 3
    assert broker.names.priority_of("tasks", "p-tasks-p3") is None
    assert not SqsBroker.from_url("sqs://p", region="us-east-1").fifo
    with pytest.raises(ConfigError, match="fifo"):
        SqsBroker.from_url("sqs://p?fifo=maybe", region="us-east-1")


async def test_a_group_runs_in_order_one_at_a_time_a_retry_included(fifo: SqsBroker) -> None:
    """s1's second turn waits while its first is out, and while the first waits out its retry
    delay; another session's turn runs meanwhile."""
    for message in (turn("a1", "s1"), turn("a2", "s1"), turn("b1", "s2")):
        await fifo.publish(message)
    seen: list[tuple[str, int]] = []
    async with fifo.consume(prefetch=10) as deliveries:
        first, second = await next_delivery(deliveries), await next_delivery(deliveries)
        assert {first.message.task_id, second.message.task_id} == {"a1", "b1"}
        a1 = first if first.message.task_id == "a1" else second
        b1 = second if a1 is first else first
        await a1.retry(1.0)  # a2 must not overtake it
        await b1.ack()
        for _ in range(2):
            delivery = await next_delivery(deliveries)
            seen.append((delivery.message.task_id, delivery.message.attempt))
            await delivery.ack()
    assert [task_id for task_id, _ in seen] == ["a1", "a2"]
    assert seen[0] == ("a1", 2)  # on FIFO each receive counts as an attempt
    assert await fifo.depth() == 0


async def test_a_group_is_handed_out_one_message_at_a_time(fifo: SqsBroker) -> None:
    """Received together, a group's messages still reach the worker one after the other."""
    for n in range(3):
        await fifo.publish(turn(f"t{n}", "s1"))
    order = []
    async with fifo.consume(prefetch=10) as deliveries:
        for _ in range(3):
            delivery = await next_delivery(deliveries)
            with pytest.raises(TimeoutError):  # nothing else of s1 while it is out
                await asyncio.wait_for(anext(deliveries), 0.5)
            order.append(delivery.message.task_id)
            await delivery.ack()
    assert order == ["t0", "t1", "t2"]


async def test_a_hand_over_sent_twice_is_stored_once(fifo: SqsBroker) -> None:
    await fifo.publish(turn("once", None))
    await fifo.publish(turn("once", None))  # the same attempt again: deduplicated
    await fifo.publish(turn("other", None))
    assert await fifo.depth() == 2


async def test_dead_letters_on_fifo(fifo: SqsBroker) -> None:
    await fifo.publish(turn("doomed", "s1"))
    async with fifo.consume(prefetch=1) as deliveries:
        await (await next_delivery(deliveries)).dead("no such agent")
    letters = await fifo.dead_letters()
    assert [(d.message.task_id, d.reason) for d in letters] == [("doomed", "no such agent")]


def test_a_session_turn_s_task_carries_its_session_as_group() -> None:
    now = datetime.now(UTC)
    fields = {"tenant_id": "acme", "agent": "echo", "status": "queued"}
    task = TaskRecord(id="t1", session_id="sess-1", created_at=now, updated_at=now, **fields)
    assert _message(task, TraceParent.new(), None).headers[GROUP_HEADER] == "sess-1"
    alone = TaskRecord(id="t2", created_at=now, updated_at=now, **fields)
    assert GROUP_HEADER not in _message(alone, TraceParent.new(), None).headers
