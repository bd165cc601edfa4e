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
from dataclasses import dataclass
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
        self.wrapped = wrapped  # made for every model call: no super() call on the hot path
        self._run = run

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        call = self._begin(request)
        final: ModelResponse | None = None
        try:
            async for item in self.wrapped.stream(call.request):
                if isinstance(item, TextDelta):
                    call.delta(item)
                    yield item
                else:
                    final = item
        except ShipyardError:
            raise
        except Exception as exc:  # a provider's own exception types stop here
            raise ModelError(f"{call.name}: {type(exc).__name__}: {exc}") from exc
        yield call.end(final)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """The call's final response, its deltas on the run's stream only (the agent loop's
        way: one generator fewer per call than ``complete(model, request)``)."""
        call = self._begin(request)
        final: ModelResponse | None = None
        try:
            async for item in self.wrapped.stream(call.request):
                if isinstance(item, TextDelta):
                    call.delta(item)
                else:
                    final = item
        except ShipyardError:
            raise
        except Exception as exc:  # a provider's own exception types stop here
            raise ModelError(f"{call.name}: {type(exc).__name__}: {exc}") from exc
        return call.end(final)

    def _begin(self, request: ModelRequest) -> _Call:
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
        return _Call(run, name, request, step, span, time.perf_counter())


@dataclass(slots=True)
class _Call:
    """One model call in flight: what its events need."""

    run: RunMeter
    name: str
    request: ModelRequest
    step: int
    span: str
    started: float

    def delta(self, item: TextDelta) -> None:
        self.run.emitter.emit("llm.delta", self.span, text=item.text)

    def end(self, final: ModelResponse | None) -> ModelResponse:
        if final is None:
            raise ModelError(f"{self.name} ended its stream without a response")
        self.run.add_usage(final.usage)
        self.run.emitter.emit(
            "llm.response",
            self.span,
            model=self.name,
            step=self.step,
            content=final.message.content,
            tool_calls=[c.model_dump() for c in final.message.tool_calls],
            prompt_tokens=final.usage.prompt_tokens,
            completion_tokens=final.usage.completion_tokens,
            cost_usd=final.usage.cost_usd,
            latency_ms=round((time.perf_counter() - self.started) * 1000, 3),
            finish_reason=final.finish_reason,
        )
        return final
