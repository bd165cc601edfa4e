"""The Lambda handlers, each invoked in a fresh process (``lambda_child``) with real API Gateway
v2 and SQS event payloads, against the real stores: records on PostgreSQL, state on Redis,
the broker on SQS (moto's server)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiobotocore.session import get_session

from tests.conftest import missing_service
from tests.serverless.events import http_event, sqs_event
from tests.servers import ROOT
from tests.stores.broker.conftest import SQS_ENV, SQS_URL, Backend, delete_sqs_queues, sqs_backend

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.sqs]

REDIS_URL = os.environ.get("SHIPYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN_KEY = "sk_shp_test_admin_" + secrets.token_hex(8)


@pytest.fixture
async def sqs() -> AsyncIterator[Backend]:
    backend = await sqs_backend()
    try:
        yield backend
    finally:
        await backend.close()
        await delete_sqs_queues(backend.prefix)


@pytest.fixture
async def env(sqs: Backend, postgres_url: str, tmp_path: Path) -> dict[str, str]:
    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as exc:
        missing_service(f"Redis unreachable at {REDIS_URL}: {exc!r}")
    finally:
        await client.aclose()
    base = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    return (
        base
        | SQS_ENV
        | {
            "PYTHONPATH": str(ROOT),
            "SHIPYARD_HOME": str(tmp_path),
            "SHIPYARD_APP": "tests.e2e.apps:app",
            "SHIPYARD_DATABASE_URL": postgres_url,
            "SHIPYARD_STATE_URL": REDIS_URL,
            "SHIPYARD_BROKER_URL": f"sqs://{sqs.prefix}?wait_s=1",
            "SHIPYARD_ADMIN_KEY": ADMIN_KEY,
            "SHIPYARD_LOG_LEVEL": "warning",
            "SHIPYARD_TASK_RETRY_BASE_S": "0.1",
        }
    )


async def invoke(kind: str, events: list[dict[str, Any]], env: dict[str, str]) -> list[Any]:
    """Invoke the handler with each event in one new process; its answers."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.serverless.lambda_child", kind,
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(child.communicate(json.dumps(events).encode()), 120)
    assert child.returncode == 0, err.decode()[-3000:]
    answers: list[Any] = json.loads(out)
    return answers


def body(answer: dict[str, Any]) -> Any:
    return json.loads(answer["body"])


async def test_the_http_handler_serves_the_api_and_keeps_records_on_postgres(
    env: dict[str, str],
) -> None:
    invoked, healthy = await invoke(
        "http",
        [
            http_event("POST", "/v1/agents/echo/invoke", key=ADMIN_KEY, body={"input": "hi"}),
            http_event("GET", "/healthz", key=ADMIN_KEY),  # a second invocation, same process
        ],
        env,
    )
    assert invoked["statusCode"] == 200, invoked
    run = body(invoked)
    assert run["status"] == "succeeded"
    assert "hi" in run["output"]
    assert healthy["statusCode"] == 200
    # another execution environment (a new process) reads the run from PostgreSQL
    (found,) = await invoke(
        "http", [http_event("GET", f"/v1/runs/{run['run_id']}", key=ADMIN_KEY)], env
    )
    assert found["statusCode"] == 200, found
    assert body(found)["status"] == "succeeded"
    (refused,) = await invoke("http", [http_event("GET", "/v1/runs", key="sk_shp_wrong")], env)
    assert refused["statusCode"] == 401
    assert body(refused)["error"]["code"] == "unauthorized"


async def receive_all(queue_name: str, expected: int) -> list[dict[str, Any]]:
    """What Lambda's poller would hand the function: the queue's messages, received."""
    client = get_session().create_client(
        "sqs", region_name=SQS_ENV["AWS_REGION"], endpoint_url=SQS_URL
    )
    messages: list[dict[str, Any]] = []
    async with client as sqs:
        url = (await sqs.get_queue_url(QueueName=queue_name))["QueueUrl"]
        for _ in range(20):
            answer = await sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                VisibilityTimeout=60,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
            messages += [dict(m) for m in answer.get("Messages", [])]
            if len(messages) >= expected:
                break
    return messages


async def test_the_sqs_handler_runs_a_batch_and_reports_only_the_failed_records(
    env: dict[str, str], sqs: Backend
) -> None:
    submit = [
        http_event("POST", "/v1/tasks", key=ADMIN_KEY, body={"agent": "echo", "input": "hello"}),
        http_event("POST", "/v1/tasks", key=ADMIN_KEY, body={"agent": "broken", "input": "x"}),
    ]
    submitted = await invoke("http", submit, env)
    assert [a["statusCode"] for a in submitted] == [202, 202], submitted
    echo_id, broken_id = (body(a)["task_id"] for a in submitted)
    messages = await receive_all(f"{sqs.prefix}-tasks-p0", 2)
    assert len(messages) == 2
    junk = {"MessageId": "junk-1", "ReceiptHandle": "junk", "Body": "not a task"}
    event = sqs_event(
        [*messages, junk], f"arn:aws:sqs:us-east-1:123456789012:{sqs.prefix}-tasks-p0"
    )
    (answer,) = await invoke("sqs", [event], env)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "junk-1"}]}
    echo, broken = await invoke(
        "http",
        [http_event("GET", f"/v1/tasks/{t}", key=ADMIN_KEY) for t in (echo_id, broken_id)],
        env,
    )
    assert body(echo)["status"] == "succeeded", body(echo)
    assert body(broken)["status"] == "queued"  # failed once, retried: a new message, attempt 2
    waiting = await receive_all(f"{sqs.prefix}-tasks-p0", 1)
    metas = [json.loads(m["MessageAttributes"]["shipyard.task"]["StringValue"]) for m in waiting]
    assert (broken_id, 2) in [(m["id"], m["attempt"]) for m in metas]  # (at least once)


async def test_on_fifo_a_group_stops_at_its_first_failure_which_is_retried_in_place(
    env: dict[str, str], sqs: Backend
) -> None:
    """A FIFO batch: a group's records run in order; the first fails, so it is hidden for its
    retry delay (FIFO has no per-message delay) and reported with the unrun one after it."""
    env = env | {"SHIPYARD_BROKER_URL": f"sqs://{sqs.prefix}?wait_s=1&fifo=true"}
    submit = [
        http_event("POST", "/v1/tasks", key=ADMIN_KEY, body={"agent": "broken", "input": "x"}),
        http_event("POST", "/v1/tasks", key=ADMIN_KEY, body={"agent": "echo", "input": "hello"}),
    ]
    submitted = await invoke("http", submit, env)
    assert [a["statusCode"] for a in submitted] == [202, 202], submitted
    broken_id, echo_id = (body(a)["task_id"] for a in submitted)
    queue = f"{sqs.prefix}-tasks-p0.fifo"
    messages = await receive_all(queue, 2)
    ids = {json.loads(m["MessageAttributes"]["shipyard.task"]["StringValue"])["id"]: m
           for m in messages}  # fmt: skip
    event = sqs_event([ids[broken_id], ids[echo_id]], f"arn:aws:sqs:us-east-1:123456789012:{queue}")
    for record in event["Records"]:
        record["attributes"]["MessageGroupId"] = "session-1"  # one session's turns
    (answer,) = await invoke("sqs", [event], env)
    reported = [item["itemIdentifier"] for item in answer["batchItemFailures"]]
    assert reported == [ids[broken_id]["MessageId"], ids[echo_id]["MessageId"]]
    broken, echo = await invoke(
        "http",
        [http_event("GET", f"/v1/tasks/{t}", key=ADMIN_KEY) for t in (broken_id, echo_id)],
        env,
    )
    assert body(broken)["status"] == "queued"  # failed once, waits for its retry
    assert body(echo)["status"] == "queued"  # not run: behind it in its group
    again = await receive_all(queue, 1)  # the failed message itself, back after its delay
    assert ids[broken_id]["MessageId"] in [m["MessageId"] for m in again]
