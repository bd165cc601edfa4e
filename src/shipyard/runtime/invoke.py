"""Stateless execution: one request, one run, recorded step by step under the caller's tenant."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shipyard.agents.agent import AgentLike
from shipyard.agents.context import RunContext, RunInput
from shipyard.errors import AgentNotFound, RunFailure, RunTimeout, ShipyardError
from shipyard.models.base import Usage
from shipyard.runtime.recorder import Recorder
from shipyard.telemetry.events import Emitter, Sink, new_id


@dataclass(frozen=True, slots=True)
class RunOutcome:
    run_id: str
    agent: str
    output: str
    usage: Usage
    trace_id: str
    latency_ms: float


@dataclass(frozen=True, slots=True)
class RunLimits:
    default_model: str
    run_timeout_s: float = 120.0
    tool_timeout_s: float = 30.0


class Invoker:
    """Runs an agent once: emits ``run.*`` events around it, enforces the run timeout, and
    answers only after the run's record is durable."""

    def __init__(
        self, agents: Mapping[str, AgentLike], recorder: Recorder, limits: RunLimits
    ) -> None:
        self._agents = agents
        self._recorder = recorder
        self._limits = limits

    def agent(self, name: str) -> AgentLike:
        found = self._agents.get(name)
        if found is None:
            raise AgentNotFound(f"no agent named {name!r}")
        return found

    async def invoke(
        self,
        *,
        tenant_id: str,
        agent: str,
        input: RunInput,
        metadata: dict[str, Any] | None = None,
        sinks: Sequence[Sink] = (),
        stream_deltas: bool = False,
        run_id: str | None = None,
    ) -> RunOutcome:
        target = self.agent(agent)
        emitter = Emitter(
            run_id=run_id or new_id("run"),
            tenant_id=tenant_id,
            agent=target.name,
            trace_id=os.urandom(16).hex(),
            span_id=os.urandom(8).hex(),
            sinks=[self._recorder.sink, *sinks],
            stream_deltas=stream_deltas,
        )
        ctx = RunContext(
            run_id=emitter.run_id,
            tenant_id=tenant_id,
            agent=target.name,
            emitter=emitter,
            default_model=self._limits.default_model,
            tool_timeout_s=self._limits.tool_timeout_s,
            metadata=metadata or {},
        )
        try:
            return await self._run(target, ctx, input)
        finally:
            await self._recorder.durable()

    async def _run(self, target: AgentLike, ctx: RunContext, input: RunInput) -> RunOutcome:
        started = time.perf_counter()
        ctx.emit("run.started", input=_jsonable(input), metadata=ctx.metadata)
        try:
            async with asyncio.timeout(self._limits.run_timeout_s):
                result = await target.run(ctx, input)
        except TimeoutError:
            error: ShipyardError = RunTimeout(
                f"run exceeded the {self._limits.run_timeout_s:g}s run timeout"
            )
            self._failed(ctx, error, started)
            raise error from None
        except ShipyardError as exc:
            self._failed(ctx, exc, started)
            raise
        except Exception as exc:
            error = RunFailure(f"agent {target.name} raised {type(exc).__name__}: {exc}")
            self._failed(ctx, error, started)
            raise error from exc
        latency_ms = _ms_since(started)
        ctx.emit(
            "run.completed",
            output=result.output,
            usage=result.usage.model_dump(),
            latency_ms=latency_ms,
        )
        return RunOutcome(
            run_id=ctx.run_id,
            agent=target.name,
            output=result.output,
            usage=result.usage,
            trace_id=ctx.emitter.trace_id,
            latency_ms=latency_ms,
        )

    @staticmethod
    def _failed(ctx: RunContext, error: ShipyardError, started: float) -> None:
        ctx.emit(
            "run.failed",
            error=error.to_dict(),
            usage=ctx.usage.model_dump(),
            latency_ms=_ms_since(started),
        )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _jsonable(input: RunInput) -> Any:
    return input if isinstance(input, str) else [m.model_dump(exclude_none=True) for m in input]
