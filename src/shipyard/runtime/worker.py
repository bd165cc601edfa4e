"""The worker: takes task messages from the broker and runs them, exactly once in the records.

For each delivery:
1. claim the task (queued → running; running → running only for a redelivery, i.e. a worker
   died mid-task), counting the attempt: every delivery that claims the task counts, a
   redelivery after a crash included — if the claim fails the task is done, cancelled or someone
   else's: a finished task's outcome is published again (a worker may have died before
   publishing it; the event is the same, see ``cloud_event``), then ack;
2. run it (a session turn if it has a ``session_id``; its input rebuilt by ``task_input``),
   stoppable by a cancel request (heard from before the claim, see ``runtime/control``);
3. store the outcome and publish it (``runtime/outcomes``), and only then ack.
A failure that may pass (model errors, timeouts, a store down during the run) goes back to
queued (where a cancel takes it at once) and is retried with backoff until the task has had
``max_attempts``; then the task is ``dead`` and its message goes to the dead letters. So does
any failure the worker does not classify (an unexpected exception), and a task delivered more
than ``max_attempts`` times (its workers died). A failure that will not pass (unknown agent,
input that cannot be decoded, an agent's own error) is ``failed`` at once. An outcome the store
refuses for its data is stored without it, never retried: an agent never runs again for a run
that finished. Failed, dead and cancelled outcomes name their run (``run_id``) once it started.
A store down around the run (claim, outcome) hands the message back after a pause.
With metrics on, the worker counts the lag of each task's first claim, its final status and
its retries. Its heartbeat and the pruning of old workers' rows: ``runtime/heartbeat``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import structlog

from shipyard.errors import (
    InvalidInput,
    ModelError,
    RateLimited,
    RunCancelled,
    RunTimeout,
    ShipyardError,
    StoreError,
    StoreRejected,
)
from shipyard.runtime.attempts import Started, before_run, run_task, unexpected
from shipyard.runtime.control import Stopper
from shipyard.runtime.heartbeat import WORKER_RETENTION_S, Heartbeat
from shipyard.runtime.outbox import RETENTION_S, WebhookOutbox
from shipyard.runtime.outcomes import Outcomes
from shipyard.runtime.retention import PRUNE_EVERY_S
from shipyard.runtime.services import Services
from shipyard.runtime.tasks import (
    CANCEL,
    TASK_QUEUE,
    control_channel,
    offer_of,
    task_input,
)
from shipyard.stores.broker.base import Broker, Delivery, backoff_s
from shipyard.stores.records.base import (
    FINAL_TASK_STATES,
    TaskRecord,
    TaskStatus,
)
from shipyard.telemetry.events import new_id

log = structlog.get_logger(__name__)

RETRYABLE = (ModelError, RunTimeout, StoreError, RateLimited)
"""Failures that may pass: the attempt is retried (a ``StoreRejected`` is not among them; a
tenant's rate limit or cap on runs in flight is)."""
HANDBACK_PAUSE_S = 1.0


class Worker:
    def __init__(
        self,
        services: Services,
        *,
        concurrency: int = 4,
        max_attempts: int = 3,
        retry_base_s: float = 1.0,
        name: str | None = None,
        heartbeat_s: float = 5.0,
        worker_retention_s: float = WORKER_RETENTION_S,
        webhook_retention_s: float = RETENTION_S,
        prune_every_s: float = PRUNE_EVERY_S,
    ) -> None:
        """``heartbeat_s``: how often the worker records that it is alive (``GET /v1/workers``).
        Worker rows not seen for ``worker_retention_s`` and webhooks settled for
        ``webhook_retention_s`` are deleted, at most every ``prune_every_s``."""
        self._services = services
        self._concurrency = concurrency
        self._max_attempts = max_attempts
        self._retry_base_s = retry_base_s
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._stopping = asyncio.Event()
        self._outbox = WebhookOutbox(
            services.records,
            services.webhooks,
            retention_s=webhook_retention_s,
            prune_every_s=prune_every_s,
        )
        self._outcomes = Outcomes(services.records, services.broker, self._outbox, self.name)
        self._metrics = services.observability.metrics
        self._heartbeat = Heartbeat(
            services.records,
            name=self.name,
            concurrency=concurrency,
            every_s=heartbeat_s,
            retention_s=worker_retention_s,
            prune_every_s=prune_every_s,
        )

    def stop(self) -> None:
        """Stop taking new tasks; tasks in flight finish (see ``run``)."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until ``stop``; then let in-flight tasks finish and hand back the rest."""
        broker = self._services.broker
        slots = asyncio.Semaphore(self._concurrency)
        running: set[asyncio.Task[None]] = set()
        beating = asyncio.create_task(self._heartbeat.run())
        delivering = asyncio.create_task(self._outbox.run())
        try:
            await self._consume(broker, slots, running)
        finally:
            self._outbox.stop()  # an attempt under way finishes; the rest wait in the outbox
            with contextlib.suppress(Exception):
                await asyncio.wait_for(delivering, 30)
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
            with contextlib.suppress(Exception):  # the last beat says it stopped
                await self._heartbeat.beat(stopped=True)

    async def _consume(
        self, broker: Broker, slots: asyncio.Semaphore, running: set[asyncio.Task[None]]
    ) -> None:
        async with broker.consume(TASK_QUEUE, prefetch=self._concurrency) as deliveries:
            taking = asyncio.create_task(self._take(deliveries, slots, running))
            stop = asyncio.create_task(self._stopping.wait())
            try:
                await asyncio.wait({taking, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                taking.cancel()  # a delivery taken meanwhile is handed back (``_take``)
                try:
                    with contextlib.suppress(asyncio.CancelledError):
                        await taking  # its error (the broker's), if it ended on one
                finally:  # the tasks in flight end before their channel closes, error or not
                    if running:
                        await asyncio.wait(running)

    async def _take(
        self,
        deliveries: AsyncIterator[Delivery],
        slots: asyncio.Semaphore,
        running: set[asyncio.Task[None]],
    ) -> None:
        """Deliveries into tasks, ``concurrency`` at a time, until cancelled (``stop``)."""
        async for delivery in deliveries:
            try:
                await slots.acquire()
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await delivery.nack(requeue=True)
                raise
            task = asyncio.create_task(self._handle(delivery))
            running.add(task)

            def done(finished: asyncio.Task[None]) -> None:
                running.discard(finished)
                slots.release()

            task.add_done_callback(done)

    async def handle(self, delivery: Delivery) -> None:
        """Run one delivery and settle it, as ``run`` does each: for a caller that receives
        the messages itself (the SQS Lambda handler, ``serverless/sqs``)."""
        await self._handle(delivery)

    async def _handle(self, delivery: Delivery) -> None:
        self._heartbeat.running += 1
        try:
            await self._process(delivery)
        except StoreRejected as exc:  # the store refuses this task's data: retrying cannot help
            log.error("task refused by the store", task_id=delivery.message.task_id, exc_info=exc)
            await self._abandon(delivery, exc.to_dict(), "the store refused the task's data")
        except StoreError as exc:  # a store is down: hand it back a little later
            log.warning("task handed back", task_id=delivery.message.task_id, error=str(exc))
            await asyncio.sleep(HANDBACK_PAUSE_S)  # a store that is down stays down a while
            with contextlib.suppress(Exception):
                await delivery.nack(requeue=True)
        except Exception as exc:  # before the claim (after it, ``_claim_and_run`` handles it)
            log.exception("task handling failed", task_id=delivery.message.task_id)
            await self._retry_delivery(delivery, unexpected(exc))
        finally:
            self._heartbeat.running -= 1

    async def _retry_delivery(self, delivery: Delivery, error: dict[str, Any]) -> None:
        """A delivery that failed before its task was claimed: retried with backoff as a new
        delivery (its ``attempt`` one higher), dead-lettered once ``max_attempts`` is reached."""
        attempt = delivery.message.attempt
        if attempt >= self._max_attempts:
            await self._abandon(delivery, error, f"failed {attempt} times: {error['code']}")
            return
        with contextlib.suppress(Exception):
            await delivery.retry(backoff_s(attempt, base_s=self._retry_base_s))

    async def _abandon(self, delivery: Delivery, error: dict[str, Any], reason: str) -> None:
        """Dead-letter the message at once (the agent never runs for it again) and, if the store
        lets it, record the task ``dead``."""
        message = delivery.message
        with contextlib.suppress(Exception):
            await self._services.records.transition_task(
                message.tenant_id,
                message.task_id,
                "dead",
                expected=frozenset({"queued", "running"}),
                error=error,
                detail={"worker": self.name, "error": error.get("code")},
            )
        with contextlib.suppress(Exception):
            await delivery.dead(reason)

    async def _process(self, delivery: Delivery) -> None:
        message = delivery.message
        # watching for a cancel from before the claim: a cancel sent once the task is seen
        # running is heard, even before the run starts (then it never starts)
        control = self._services.control
        async with control.stopper(control_channel(message.task_id), CANCEL) as stopper:
            await self._claim_and_run(delivery, stopper)

    async def _claim_and_run(self, delivery: Delivery, stopper: Stopper) -> None:
        run_id = new_id("run")  # named now, so the move says which run this attempt is
        claimed = await self._claim(delivery, run_id)
        if claimed is None:  # finished, cancelled, another worker's — or unknown
            await self._not_claimed(delivery)
            return
        if self._metrics is not None and claimed.attempts == 1:
            lag_s = (datetime.now(UTC) - claimed.created_at).total_seconds()
            self._metrics.task_claimed(claimed.agent, lag_s)
        try:
            await self._attempt(delivery, claimed, run_id, stopper)
        except StoreError:
            raise  # down (handed back) or refusing the data (abandoned): see ``_handle``
        except Exception as exc:  # a failure nobody classified: retried, then dead
            log.exception("task attempt failed", task_id=claimed.id)
            await self._failed_attempt(delivery, claimed, unexpected(exc))

    async def _not_claimed(self, delivery: Delivery) -> None:
        message = delivery.message
        current = await self._services.records.get_task(message.tenant_id, message.task_id)
        if current is None:
            await delivery.dead("no such task in the records")
            return
        if current.status in FINAL_TASK_STATES:
            # a worker that stored the outcome may have died before publishing it, or the
            # API cancelled the task while it was queued: the outcome goes out (again: the
            # same event, which subscribers and receivers deduplicate by its id)
            await self._outcomes.publish(current, message.headers)
        await delivery.ack()

    async def _attempt(
        self, delivery: Delivery, claimed: TaskRecord, run_id: str, stopper: Stopper
    ) -> None:
        """One run of a claimed task, to an outcome or a retry."""
        if await self._ended_before_run(delivery, claimed):
            return
        try:
            input = task_input(claimed)
        except InvalidInput as exc:  # it cannot be decoded: it never will be
            await self._finish(delivery, claimed, "failed", error=exc.to_dict(), dead=exc.message)
            return
        started = Started()
        try:
            headers = delivery.message.headers
            outcome = await run_task(
                self._services,
                claimed,
                input,
                run_id=run_id,
                stopper=stopper,
                sinks=[started],
                headers=headers,
            )
        except RunCancelled:
            error = {"code": "cancelled"}
            await self._finish(delivery, claimed, "cancelled", error=error, run_id=started.id)
        except StoreRejected as exc:
            await self._finish(delivery, claimed, "failed", error=exc.to_dict(), run_id=started.id)
        except RETRYABLE as exc:
            wait_s = exc.retry_after_s if isinstance(exc, RateLimited) else 0.0
            await self._failed_attempt(
                delivery, claimed, exc.to_dict(), run_id=started.id, not_before_s=wait_s
            )
        except ShipyardError as exc:
            await self._finish(delivery, claimed, "failed", error=exc.to_dict(), run_id=started.id)
        else:
            usage = outcome.usage
            await self._finish(
                delivery,
                claimed,
                "succeeded",
                output=outcome.output,
                run_id=outcome.run_id,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cost_usd=usage.cost_usd,
            )

    async def _ended_before_run(self, delivery: Delivery, claimed: TaskRecord) -> bool:
        """Whether the claimed task ended without running (see ``runtime/attempts``)."""
        settled = await before_run(
            self._services.records,
            claimed,
            redelivered=delivery.redelivered,
            max_attempts=self._max_attempts,
        )
        if settled is None:
            return False
        await self._finish(delivery, claimed, settled.status, dead=settled.dead, **settled.fields)
        return True

    async def _claim(self, delivery: Delivery, run_id: str) -> TaskRecord | None:
        """queued → running, counting the attempt; a redelivered message also takes over the
        run its own delivery started (its worker died)."""
        message = delivery.message
        offer = offer_of(message)
        claim = functools.partial(
            self._services.records.transition_task,
            message.tenant_id,
            message.task_id,
            "running",
            count_attempt=True,
            offer=offer,
            handover_pending=False,  # the broker has it: no sweep offers it again
            detail={"worker": self.name, "run_id": run_id},
        )
        claimed = await claim(expected=frozenset({"queued"}))
        if claimed is None and delivery.redelivered:
            # its worker died mid-run: this message takes the run over; a duplicate of the task
            # (another message, as a second hand-over makes) does not
            claimed = await claim(expected=frozenset({"running"}), from_offer=offer)
        return claimed

    async def _failed_attempt(
        self,
        delivery: Delivery,
        task: TaskRecord,
        error: dict[str, Any],
        *,
        run_id: str | None = None,
        not_before_s: float = 0.0,
    ) -> None:
        """Retried with backoff, and no sooner than ``not_before_s`` (a limit's Retry-After),
        back to queued, where a cancel takes it at once, until the task has had
        ``max_attempts`` (every delivery counts); then ``dead`` and dead-lettered."""
        attempts = task.attempts
        if attempts >= self._max_attempts:
            reason = error.get("message") or error["code"]
            await self._finish(delivery, task, "dead", error=error, dead=reason, run_id=run_id)
            return
        delay_s = max(backoff_s(attempts, base_s=self._retry_base_s), not_before_s)
        requeued = await self._services.records.transition_task(
            task.tenant_id,
            task.id,
            "queued",
            expected=frozenset({"running"}),
            error=error,
            run_id=run_id,
            detail={"retry_in_s": delay_s, "error": error["code"]},
        )
        if requeued is None:
            await delivery.ack()  # cancelled meanwhile
            return
        if self._metrics is not None:
            self._metrics.task_retried(task.agent)
        await delivery.retry(delay_s)

    async def _finish(
        self,
        delivery: Delivery,
        task: TaskRecord,
        status: TaskStatus,
        *,
        dead: str | None = None,
        **fields: Any,
    ) -> None:
        final = await self._outcomes.store(task, status, fields)
        if final is not None:
            self._heartbeat.finished(final.status)
            if self._metrics is not None:
                self._metrics.task_finished(final.agent, final.status)
            await self._outcomes.publish(final, delivery.message.headers)
        if dead is not None:
            await delivery.dead(dead)
        else:
            await delivery.ack()
