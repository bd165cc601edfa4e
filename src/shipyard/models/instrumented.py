"""``InstrumentedModel``: puts every model call of a run on the run's event stream.

Each call gets a span of its own (sent to the provider as ``traceparent``) and emits
``llm.request``, an ``llm.delta`` per streamed piece of text and ``llm.response`` with the
tokens, cost and latency, and adds the call's usage to the run's. A provider's own exception
becomes a ``ModelError``. ``RunContext.model()`` puts it outermost around the resolver's model,
so it records whatever the other wrappers let through.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Protocol

from shipyard.errors import ModelError, ShipyardError
from shipyard.models.base import (
    ChatModel,
    ModelRequest,
    ModelResponse,
    StreamItem,
    TextDelta,
    Usage,
)
from shipyard.models.wrapper import WrapperModel
from shipyard.telemetry.events import Emitter, new_span_id
from shipyard.telemetry.tracecontext import TraceParent


class RunMeter(Protocol):
    """The run a model call counts against (``RunContext`` is one)."""

    @property
    def emitter(self) -> Emitter: ...

    def next_model_step(self) -> int:
        """The number of this model call in the run (1, 2, ...)."""
        ...

    def add_usage(self, usage: Usage) -> None: ...


class InstrumentedModel(WrapperModel):
    __slots__ = ("_run",)

    def __init__(self, wrapped: ChatModel, run: RunMeter) -> None:
        super().__init__(wrapped)
        self._run = run

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        run, name = self._run, self.wrapped.name
        emitter, step, span = run.emitter, run.next_model_step(), new_span_id()
        header = TraceParent(emitter.trace_id, span).header()
        request = request.model_copy(update={"traceparent": header})
        emitter.emit(
            "llm.request",
            span,
            model=name,
            step=step,
            messages=len(request.messages),
            tools=len(request.tools),
        )
        started = time.perf_counter()
        final: ModelResponse | None = None
        try:
            async for item in self.wrapped.stream(request):
                if isinstance(item, TextDelta):
                    emitter.emit("llm.delta", span, text=item.text)
                    yield item
                else:
                    final = item
        except ShipyardError:
            raise
        except Exception as exc:  # a provider's own exception types stop here
            raise ModelError(f"{name}: {type(exc).__name__}: {exc}") from exc
        if final is None:
            raise ModelError(f"{name} ended its stream without a response")
        run.add_usage(final.usage)
        emitter.emit(
            "llm.response",
            span,
            model=name,
            step=step,
            content=final.message.content,
            tool_calls=[c.model_dump() for c in final.message.tool_calls],
            prompt_tokens=final.usage.prompt_tokens,
            completion_tokens=final.usage.completion_tokens,
            cost_usd=final.usage.cost_usd,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            finish_reason=final.finish_reason,
        )
        yield final
