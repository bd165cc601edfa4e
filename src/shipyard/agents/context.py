"""What a run is (``RunRequest``) and what a running agent can see and use (``RunContext``)."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx

from shipyard.agents.memory import RunMemory
from shipyard.errors import ConfigError
from shipyard.guard.pipeline import RunGuard
from shipyard.guard.pseudonyms import Pseudonyms
from shipyard.models.base import ChatModel, Message, Usage
from shipyard.models.instrumented import InstrumentedModel
from shipyard.models.resolver import ModelResolver
from shipyard.stores.records.artifacts_base import ArtifactRecord
from shipyard.telemetry.events import Emitter, EventType, Step, new_id
from shipyard.telemetry.tracecontext import TraceParent

RunInput = str | list[Message]


def _new_run_id() -> str:
    return new_id("run")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRequest:
    """What a run is, built once at its entry point (the invoke route, a session turn, a
    worker's task, an agent calling another, ``shipyard.testing.run_agent``) and carried on
    the run's ``RunContext`` as ``ctx.request``.

    ``agent``: for a session turn the session's agent decides (``RunRequest.turn`` leaves it
    empty). ``parent``: the caller's span (``traceparent``); with ``parent_run_id``, the run
    that started this one. ``model``: overrides the agent's model for this run only.
    ``timeout_s``: this run's timeout, at most the server's (``None``: the server's).
    """

    tenant_id: str
    agent: str
    input: RunInput
    run_id: str = field(default_factory=_new_run_id)
    session_id: str | None = None
    task_id: str | None = None
    parent_run_id: str | None = None
    parent: TraceParent | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    model: str | ChatModel | None = None
    timeout_s: float | None = None

    @classmethod
    def turn(cls, tenant_id: str, session_id: str, input: RunInput, **fields: Any) -> RunRequest:
        """A session turn's request (the session names the agent)."""
        return cls(tenant_id=tenant_id, agent="", input=input, session_id=session_id, **fields)


@dataclass(frozen=True, slots=True)
class ContextBudget:
    """How much history a session may send the model, and what to do beyond it.

    ``max_tokens`` is estimated (about four characters a token). ``policy``: ``truncate``
    drops the oldest turns, ``summarize`` has the model write a summary of them (the full
    text stays in the records, turn by turn), ``error`` refuses the turn (422
    ``context_overflow``). ``keep_last`` messages are always kept verbatim.
    """

    max_tokens: int
    policy: Literal["truncate", "summarize", "error"] = "truncate"
    keep_last: int = 4


ArtifactData = bytes | str | AsyncIterable[bytes]


class ArtifactWriter(Protocol):
    """Where a run's artifacts go (``runtime.artifacts.ArtifactService`` on a server)."""

    async def put(
        self,
        tenant_id: str,
        data: ArtifactData,
        *,
        name: str,
        content_type: str = ...,
        run_id: str | None = None,
    ) -> ArtifactRecord: ...


@dataclass(frozen=True, slots=True)
class RunArtifacts:
    """``ctx.artifacts``: files a run produces, kept beside its record (``GET
    /v1/runs/{id}/artifacts``) in the blob store of the tenant's region."""

    writer: ArtifactWriter | None
    tenant_id: str
    run_id: str

    async def put(
        self, name: str, data: ArtifactData, content_type: str = "application/octet-stream"
    ) -> ArtifactRecord:
        """Store ``data`` (bytes, text as UTF-8, or an async stream of bytes) as this run's
        artifact ``name``; the record says its ``id``, size and sha256."""
        if self.writer is None:
            raise ConfigError("this process has no artifact store")
        return await self.writer.put(
            self.tenant_id, data, name=name, content_type=content_type, run_id=self.run_id
        )


@dataclass(slots=True)
class RunContext:
    """Handed to every agent run; ``usage`` accumulates as model calls are made.

    ``request`` is what the run is (its input, session, task, parent, metadata...).
    """

    run_id: str
    tenant_id: str
    agent: str
    emitter: Emitter
    default_model: str
    request: RunRequest
    models: ModelResolver
    http_factory: Callable[[RunContext], httpx.AsyncClient] = field(repr=False)
    """Makes the run's ``http`` client, the first time it is read."""
    tool_timeout_s: float = 30.0
    metadata: dict[str, Any] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    model_calls: int = 0
    guard: RunGuard | None = None
    """The run's guard policy, ready to check text (None: no rules); the invoker sets it."""
    pseudonyms: Pseudonyms | None = field(default=None, repr=False)
    """The run's (or its session's) pseudonyms, when its guard policy pseudonymizes."""
    artifact_writer: ArtifactWriter | None = field(default=None, repr=False)
    memory: RunMemory | None = field(default=None, repr=False)
    """``ctx.memory``: the long-term memories of the run's tenant, agent and subject (set by the
    memory run hook for an agent with ``Memory``; None otherwise)."""
    recalled: tuple[str, ...] = ()
    """Memories recalled for this run (guarded), put into the agent's context by the loop."""
    _http: httpx.AsyncClient | None = field(default=None, init=False, repr=False)

    @property
    def artifacts(self) -> RunArtifacts:
        """The run's artifacts: ``await ctx.artifacts.put(name, data, content_type)``."""
        return RunArtifacts(self.artifact_writer, self.tenant_id, self.run_id)

    @property
    def http(self) -> httpx.AsyncClient:
        """The run's HTTP client for tools (``ctx: RunContext`` in a tool). Its transport is the
        egress seam (``shipyard.runtime.egress``): every request, each redirect hop included,
        passes the server's, the agent's and the tenant's egress rules and the address checks,
        under their size and time caps, and is an ``egress.request`` event of the run. Made on
        first use, closed when the run ends."""
        if self._http is None:
            self._http = self.http_factory(self)
        return self._http

    async def close_http(self) -> None:
        """Close the run's client, if it made one (the invoker does, when the run ends)."""
        if self._http is not None:
            client, self._http = self._http, None
            await client.aclose()

    def model(self, ref: str | ChatModel | None = None) -> InstrumentedModel:
        """The model for a call of this run: the request's override, else ``ref`` (the
        agent's), else the server's default — resolved by the server's resolver (its wrappers
        around it) and instrumented, so the call is on the run's stream, priced and counted."""
        chosen = self.request.model or ref or self.default_model
        return InstrumentedModel(self.models.resolve(chosen), self)

    def next_model_step(self) -> int:
        self.model_calls += 1
        return self.model_calls

    def add_usage(self, usage: Usage) -> None:
        self.usage = self.usage + usage

    def emit(self, type_: EventType | str, /, span_id: str | None = None, **data: Any) -> None:
        """Add an event to the run's stream: one of Shipyard's kinds, or one of your own with a
        namespaced type (``ctx.emit("app.progress", done=3)``) and JSON data. A type or data
        the event schema does not allow raises ``InvalidEvent`` (a ``ValueError``) here, and
        the run's stream is left as it was."""
        self.emitter.emit(type_, span_id, **data)

    def step(self, span_id: str) -> Step:
        """This run at one of its steps: the parent of child runs started there."""
        return Step(self.run_id, self.tenant_id, self.emitter.trace_id, span_id)


@dataclass(frozen=True, slots=True)
class RunResult:
    """An agent's answer, with the messages the run added (for sessions) and the tokens it used."""

    output: str
    usage: Usage
    messages: tuple[Message, ...] = ()
