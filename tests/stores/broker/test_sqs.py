"""What the SQS broker adds to the contract: its URL, the heartbeat, the redrive policy, and the
message attributes other AWS tools see (on moto's server, ``scripts/services.sh``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiobotocore.session import get_session

from shipyard.config import Settings
from shipyard.errors import ConfigError
from shipyard.stores.broker.base import TaskMessage
from shipyard.stores.broker.sqs import SqsBroker
from tests.stores.broker.conftest import (
    SQS_ENV,
    SQS_URL,
    Backend,
    delete_sqs_queues,
    open_sqs,
    sqs_backend,
)

pytestmark = pytest.mark.sqs

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
async def sqs() -> AsyncIterator[Backend]:
    backend = await sqs_backend()
    try:
        yield backend
    finally:
        await backend.close()
        await delete_sqs_queues(backend.prefix)


def task(n: int = 1) -> TaskMessage:
    return TaskMessage(
        task_id=f"task-{n}",
        tenant_id="acme",
        agent="echo",
        body=b'{"n": %d}' % n,
        headers={"traceparent": TRACEPARENT},
    )


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("sqs://", "prefix"),
        ("sqs://has.dots", "prefix"),
        ("sqs://ok?colour=red", "unknown"),
        ("sqs://ok?visibility_s=0", "visibility_s"),
        ("sqs://ok?wait_s=21", "wait_s"),
        ("amqp://ok", "scheme"),
    ],
)
def test_bad_urls_are_config_errors(url: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        SqsBroker.from_url(url, region="us-east-1")


def test_the_region_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    with pytest.raises(ConfigError, match="AWS_REGION"):
        SqsBroker.from_url("sqs://shipyard")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    broker = SqsBroker.from_url("sqs://shipyard?visibility_s=60&max_receives=3")
    assert (broker.region, broker.visibility_s, broker.max_receives) == ("eu-west-3", 60, 3)


def test_settings_take_an_sqs_broker_url() -> None:
    settings = Settings(broker_url="sqs://shipyard-prod")
    assert settings.resolved_broker_url == "sqs://shipyard-prod"


async def test_the_heartbeat_keeps_a_long_task_from_other_consumers(sqs: Backend) -> None:
    """Held for three visibility timeouts, the delivery is still ours and nobody else's."""
    holder, other = open_sqs(sqs.prefix, visibility_s=1), open_sqs(sqs.prefix, visibility_s=1)
    sqs.opened += [holder, other]
    await holder.publish(task(1))
    async with holder.consume(prefetch=1) as mine, other.consume(prefetch=1) as theirs:
        held = await asyncio.wait_for(anext(mine), 5)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(theirs), 3.5)
        await held.ack()
    assert await holder.depth() == 0


async def test_a_message_received_too_often_is_redriven_to_the_dead_letters(
    sqs: Backend,
) -> None:
    broker = SqsBroker.from_url(
        f"sqs://{sqs.prefix}?max_receives=2&wait_s=1", region="us-east-1", endpoint=SQS_URL
    )
    sqs.opened.append(broker)
    await broker.publish(task(1))
    async with broker.consume(prefetch=1) as deliveries:
        for _ in range(2):  # a worker crashing on it, twice
            await (await asyncio.wait_for(anext(deliveries), 5)).nack(requeue=True)
        with pytest.raises(TimeoutError):
            extra = await asyncio.wait_for(anext(deliveries), 2)
            await extra.ack()
    letters = await broker.dead_letters()
    assert [letter.message.task_id for letter in letters] == ["task-1"]
    assert "redrive" in letters[0].reason


async def test_trace_context_and_tenant_are_message_attributes(sqs: Backend) -> None:
    broker = sqs.open()
    await broker.publish(task(1))
    client = get_session().create_client(
        "sqs", region_name=SQS_ENV["AWS_REGION"], endpoint_url=SQS_URL
    )
    async with client as raw:
        url = (await raw.get_queue_url(QueueName=f"{sqs.prefix}-tasks-p0"))["QueueUrl"]
        answer = await raw.receive_message(
            QueueUrl=url, MessageAttributeNames=["All"], VisibilityTimeout=0
        )
    attributes = answer["Messages"][0]["MessageAttributes"]
    assert attributes["traceparent"]["StringValue"] == TRACEPARENT
    assert attributes["shipyard.tenant"]["StringValue"] == "acme"
    assert answer["Messages"][0]["Body"] == '{"n": 1}'


async def test_queues_made_beforehand_with_other_attributes_are_used_as_they_are(
    sqs: Backend,
) -> None:
    """A deployment's template (deploy/lambda) creates the queues with attributes of its own;
    SQS refuses to create a queue again with others, so the broker takes the existing one."""
    client = get_session().create_client(
        "sqs", region_name=SQS_ENV["AWS_REGION"], endpoint_url=SQS_URL
    )
    async with client as raw:
        dead = await raw.create_queue(QueueName=f"{sqs.prefix}-tasks-dead")
        work = await raw.create_queue(
            QueueName=f"{sqs.prefix}-tasks-p0", Attributes={"VisibilityTimeout": "900"}
        )
        broker = sqs.open()
        await broker.publish(task(1))
        assert await broker.depth() == 1
        answer = await raw.get_queue_attributes(
            QueueUrl=work["QueueUrl"], AttributeNames=["VisibilityTimeout", "RedrivePolicy"]
        )
        assert answer["Attributes"] == {"VisibilityTimeout": "900"}  # left as it was made
        listed = await raw.list_queues(QueueNamePrefix=sqs.prefix)
        assert sorted(listed["QueueUrls"]) == sorted([dead["QueueUrl"], work["QueueUrl"]])
