"""The SQS broker's clients and queues: made on first use, their URLs kept (see ``sqs_wire``
for the layout)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import orjson

from shipyard.errors import StoreError
from shipyard.stores.broker.sqs_wire import Names

if TYPE_CHECKING:
    from aiobotocore.session import AioSession
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.literals import QueueAttributeNameType

    QueueAttributes = dict[QueueAttributeNameType, str]

RETENTION_S = 1_209_600  # 14 days, SQS's maximum
_EXISTS = ("QueueAlreadyExists", "QueueNameExists")


def work_queue_attributes(
    *, visibility_s: int, max_receives: int, dead_arn: str, fifo: bool = False
) -> QueueAttributes:
    """The attributes of a work queue the broker creates. ``deploy/lambda/template.yaml``
    declares its queues with the same (``tests/deploy/test_lambda.py`` compares them)."""
    redrive = {"deadLetterTargetArn": dead_arn, "maxReceiveCount": str(max_receives)}
    attributes: QueueAttributes = {
        "VisibilityTimeout": str(visibility_s),
        "RedrivePolicy": orjson.dumps(redrive).decode(),
    }
    return attributes | dead_queue_attributes(fifo=fifo)


def dead_queue_attributes(*, fifo: bool = False) -> QueueAttributes:
    """The attributes of a dead-letter queue the broker creates, and those every queue of the
    broker has (a FIFO queue's dead letters must be a FIFO queue too)."""
    attributes: QueueAttributes = {
        "MessageRetentionPeriod": str(RETENTION_S),
        "SqsManagedSseEnabled": "true",
    }
    if fifo:
        attributes["FifoQueue"] = "true"
    return attributes


class SqsQueues:
    """One SQS and one SNS client, and the URLs of the queues known to exist."""

    def __init__(
        self,
        names: Names,
        *,
        region: str,
        endpoint: str | None,
        visibility_s: int,
        read_timeout_s: int,
        max_receives: int,
        refresh_s: float,
    ) -> None:
        self.names = names
        self._region = region
        self._endpoint = endpoint
        self._visibility_s = visibility_s
        self._read_timeout_s = read_timeout_s
        self._max_receives = max_receives
        self._refresh_s = refresh_s
        self._stack = AsyncExitStack()
        self._lock = asyncio.Lock()
        self._sqs: SQSClient | None = None
        self._sns: SNSClient | None = None
        self._shut = False
        self._urls: dict[str, str] = {}  # SQS queue name -> URL
        self._work: dict[str, dict[int, str]] = {}  # queue -> priority -> URL, known to exist
        self._listed_at: dict[str, float] = {}

    async def sqs(self) -> SQSClient:
        if self._sqs is None:
            async with self._lock:
                if self._sqs is None:
                    self._check()
                    client = self._session().create_client("sqs", **self._options())
                    self._sqs = await self._stack.enter_async_context(client)
        return self._sqs

    async def sns(self) -> SNSClient:
        if self._sns is None:
            async with self._lock:
                if self._sns is None:
                    self._check()
                    client = self._session().create_client("sns", **self._options())
                    self._sns = await self._stack.enter_async_context(client)
        return self._sns

    async def close(self) -> None:
        self._shut = True
        with contextlib.suppress(Exception):  # closing: nothing left to report it to
            await self._stack.aclose()

    def _check(self) -> None:
        if self._shut:
            raise StoreError("broker (sqs) is closed", details={"operation": "connect"})

    def _session(self) -> AioSession:
        from aiobotocore.session import get_session

        return get_session()

    def _options(self) -> dict[str, Any]:
        from aiobotocore.config import AioConfig

        config = AioConfig(
            connect_timeout=5,
            read_timeout=self._read_timeout_s,
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=50,
        )
        return {"region_name": self._region, "endpoint_url": self._endpoint, "config": config}

    async def work_urls(self, queue: str, *, refresh: bool = False) -> dict[int, str]:
        """The work queues of ``queue`` known to exist, by priority; listed again every
        ``refresh_s`` (a producer elsewhere may have made one for a new priority)."""
        now = time.monotonic()
        if refresh or now - self._listed_at.get(queue, -math.inf) >= self._refresh_s:
            sqs = await self.sqs()
            answer = await sqs.list_queues(QueueNamePrefix=f"{self.names.base(queue)}-p")
            known = self._work.setdefault(queue, {})
            for url in answer.get("QueueUrls", []):
                priority = self.names.priority_of(queue, url.rsplit("/", 1)[-1])
                if priority is not None:
                    known[priority] = url
            self._listed_at[queue] = now
        return dict(self._work.get(queue, {}))

    async def work_url(self, queue: str, priority: int) -> str:
        """The work queue of ``queue`` for ``priority``, created (with its redrive policy to
        the dead letters) if it is new here."""
        known = self._work.setdefault(queue, {})
        if priority not in known:
            attributes = work_queue_attributes(
                visibility_s=self._visibility_s,
                max_receives=self._max_receives,
                dead_arn=await self.arn(await self.dead_url(queue)),
                fifo=self.names.fifo,
            )
            known[priority] = await self._create(self.names.work(queue, priority), attributes)
        return known[priority]

    async def dead_url(self, queue: str) -> str:
        name = self.names.dead(queue)
        if name not in self._urls:
            self._urls[name] = await self._create(name, dead_queue_attributes(fifo=self.names.fifo))
        return self._urls[name]

    async def _create(self, name: str, attributes: QueueAttributes) -> str:
        """The URL of queue ``name``, created with ``attributes`` unless it exists: one made
        otherwise (by CloudFormation, by hand, by another version) is used as it is, since SQS
        refuses to create a queue again with other attributes."""
        from botocore.exceptions import ClientError

        sqs = await self.sqs()
        try:
            answer = await sqs.create_queue(QueueName=name, Attributes=attributes)
        except ClientError as e:
            if str(e.response.get("Error", {}).get("Code", "")) not in _EXISTS:
                raise
            answer = await sqs.get_queue_url(QueueName=name)
        return answer["QueueUrl"]

    async def existing_url(self, name: str) -> str | None:
        """The URL of the queue ``name``, or ``None`` if there is no such queue."""
        if name in self._urls:
            return self._urls[name]
        from botocore.exceptions import ClientError

        sqs = await self.sqs()
        try:
            answer = await sqs.get_queue_url(QueueName=name)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if "NonExistentQueue" in code or "QueueDoesNotExist" in code:
                return None
            raise
        self._urls[name] = answer["QueueUrl"]
        return answer["QueueUrl"]

    async def arn(self, url: str) -> str:
        sqs = await self.sqs()
        answer = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return answer["Attributes"]["QueueArn"]
