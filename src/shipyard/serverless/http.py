"""``shipyard.serverless.http:handler``: the HTTP API as an AWS Lambda function (API Gateway
HTTP API v1/v2, ALB or function URL events), the FastAPI app through Mangum.

Settings come from the environment as for ``shipyard serve``; a stateless function keeps its
records on PostgreSQL and its state on Redis (``SHIPYARD_DATABASE_URL``, ``SHIPYARD_STATE_URL``).
The app starts once per execution environment, on the first invocation: the stores are
checked (and migrated if ``SHIPYARD_MIGRATE_ON_START``), then kept open across invocations —
Mangum's own lifespan handling would start and stop them on every call, so it is off. Nothing
is lost when Lambda freezes the process after an answer: a run is answered only once its
records are committed. A task is handed to the broker in the background, after its answer
(``runtime/handover``): the handler lets those hand-overs finish (``HANDOVER_WAIT_S`` at most)
before it returns, since a frozen process would hold them until its next invocation (a
server's sweep takes over any left pending).
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mangum import Mangum

    from shipyard.runtime.tasks import TaskService

__all__ = ["handler"]

HANDOVER_WAIT_S = 5.0
_adapter: Mangum | None = None
_lifespan: AbstractAsyncContextManager[Any] | None = None  # kept open: the app stays started
_tasks: TaskService | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point."""
    answer = _started()(event, context)
    if _tasks is not None and _tasks.handovers_in_flight:
        asyncio.get_event_loop().run_until_complete(_handed_over(_tasks))
    return answer


async def _handed_over(tasks: TaskService) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(HANDOVER_WAIT_S):
            while tasks.handovers_in_flight:  # noqa: ASYNC110 -- a count, no event to wait on
                await asyncio.sleep(0.005)


def _started() -> Mangum:
    global _adapter, _lifespan, _tasks
    if _adapter is None:
        from mangum import Mangum

        from shipyard.app import load_app, prepare_settings
        from shipyard.config import load_settings
        from shipyard.telemetry.logging import configure_logging

        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)
        settings = prepare_settings(settings)
        api = load_app(settings.app).asgi(settings)
        adapter = Mangum(api, lifespan="off")  # makes the loop Mangum runs every request on
        lifespan = api.router.lifespan_context(api)
        asyncio.get_event_loop().run_until_complete(lifespan.__aenter__())
        _adapter, _lifespan, _tasks = adapter, lifespan, api.state.services.tasks
    return _adapter
