"""The SQS broker's results exchange: an SNS topic, a queue per subscriber.

``publish_result`` publishes on the topic ``<prefix>-results`` with the routing key as a message
attribute. A subscriber creates a queue of its own, subscribes it to the topic (raw delivery)
and polls it while it listens, matching routing keys against its pattern here (SNS filter
policies cannot express ``*`` and ``#``); leaving deletes the subscription and the queue. As on
a topic exchange, a result published while nobody listens is gone.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from shipyard.errors import StoreError
from shipyard.stores.broker.base import ResultEvent
from shipyard.stores.broker.local_results import ResultSubscription

if TYPE_CHECKING:
    from types_aiobotocore_sqs.type_defs import DeleteMessageBatchRequestEntryTypeDef

    from shipyard.stores.broker.sqs import SqsBroker

log = structlog.get_logger("shipyard.broker.sqs")

ROUTING_KEY = "routing_key"
ENCODING = "encoding"
RETENTION_S = 300  # a subscriber's queue keeps what it has not read yet for five minutes


@dataclass(eq=False)
class _Listener:
    subscription: ResultSubscription
    queue_url: str
    subscription_arn: str
    pump: asyncio.Task[None] | None = None
    closed: bool = False


class ResultsTopic:
    def __init__(self, broker: SqsBroker, max_queued: int) -> None:
        self._broker = broker
        self._max_queued = max_queued
        self._arn: str | None = None
        self._listeners: set[_Listener] = set()

    async def publish(self, event: bytes, routing_key: str) -> None:
        sns = await self._broker.queues.sns()
        attributes: dict[str, Any] = {}
        if routing_key:
            attributes[ROUTING_KEY] = {"DataType": "String", "StringValue": routing_key}
        try:
            text = event.decode()
        except UnicodeDecodeError:
            text = base64.b64encode(event).decode()
            attributes[ENCODING] = {"DataType": "String", "StringValue": "base64"}
        await sns.publish(
            TopicArn=await self._topic(), Message=text or " ", MessageAttributes=attributes
        )

    @asynccontextmanager
    async def subscribed(self, subscription: ResultSubscription) -> AsyncIterator[None]:
        async with self._broker.translate("subscribe_results"):
            listener = await self._listen(subscription)
        self._listeners.add(listener)
        listener.pump = asyncio.create_task(self._pump(listener), name="sqs-results")
        try:
            yield
        finally:
            await self._leave(listener)

    async def close(self) -> None:
        await asyncio.gather(*(self._leave(listener) for listener in list(self._listeners)))

    async def _topic(self) -> str:
        if self._arn is None:
            sns = await self._broker.queues.sns()
            answer = await sns.create_topic(Name=self._broker.names.results_topic)
            self._arn = str(answer["TopicArn"])
        return self._arn

    async def _listen(self, subscription: ResultSubscription) -> _Listener:
        sqs = await self._broker.queues.sqs()
        sns = await self._broker.queues.sns()
        topic = await self._topic()
        name = self._broker.names.results_queue(uuid.uuid4().hex[:16])
        url = (await sqs.create_queue(QueueName=name))["QueueUrl"]
        attributes = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        arn = attributes["Attributes"]["QueueArn"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": topic}},
                }
            ],
        }
        await sqs.set_queue_attributes(
            QueueUrl=url,
            Attributes={
                "Policy": orjson.dumps(policy).decode(),
                "MessageRetentionPeriod": str(RETENTION_S),
            },
        )
        answer = await sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=arn,
            Attributes={"RawMessageDelivery": "true"},
            ReturnSubscriptionArn=True,
        )
        return _Listener(subscription, url, str(answer["SubscriptionArn"]))

    async def _pump(self, listener: _Listener) -> None:
        while not listener.closed:
            try:
                async with self._broker.translate("subscribe_results"):
                    await self._receive(listener)
            except StoreError as e:
                log.warning("sqs_results_receive_failed", error=str(e))
                await asyncio.sleep(1.0)

    async def _receive(self, listener: _Listener) -> None:
        sqs = await self._broker.queues.sqs()
        answer = await sqs.receive_message(
            QueueUrl=listener.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self._broker.wait_s,
            MessageAttributeNames=["All"],
        )
        messages = answer.get("Messages", [])
        for item in messages:
            attributes = item.get("MessageAttributes", {})
            key = (
                attributes[ROUTING_KEY].get("StringValue", "") if ROUTING_KEY in attributes else ""
            )
            body = item["Body"]
            encoded = ENCODING in attributes and attributes[ENCODING].get("StringValue") == "base64"
            event = base64.b64decode(body) if encoded else body.encode()
            listener.subscription.offer(ResultEvent(key, event))
        if messages:
            entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ]
            await sqs.delete_message_batch(QueueUrl=listener.queue_url, Entries=entries)

    async def _leave(self, listener: _Listener) -> None:
        if listener.closed:
            return
        listener.closed = True
        self._listeners.discard(listener)
        listener.subscription.end()
        if listener.pump is not None:
            listener.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener.pump
        with contextlib.suppress(StoreError):
            async with self._broker.translate("unsubscribe_results"):
                sns = await self._broker.queues.sns()
                await sns.unsubscribe(SubscriptionArn=listener.subscription_arn)
                sqs = await self._broker.queues.sqs()
                await sqs.delete_queue(QueueUrl=listener.queue_url)
