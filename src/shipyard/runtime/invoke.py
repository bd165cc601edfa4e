"""Stateless execution: one request, one run, recorded step by step under the caller's tenant."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import TypeAdapter

from shipyard.agents.agent import AgentLike
from shipyard.agents.context import ArtifactWriter, RunContext, RunInput, RunRequest, RunResult
from shipyard.agents.delegate import AgentCalls, current_calls
from shipyard.agents.references import ArtifactInput, references
from shipyard.errors import (
    AgentNotFound,
    ConfigError,
    InputBlocked,
    RateLimited,
    RunCancelled,
    RunFailure,
    RunTimeout,
    ShipyardError,
    StoreError,
)
from shipyard.guard.pipeline import RunGuard, Verdict
from shipyard.guard.policy import NO_GUARDS, GuardPolicy
from shipyard.guard.pseudonyms import Pseudonyms
from shipyard.guard.rules import EgressRules
from shipyard.guard.stream import OutputFilter
from shipyard.models.base import AssistantMessage, ChatModel, Message, Usage, UserMessage
from shipyard.models.resolver import ModelResolver
from shipyard.runtime.egress import ToolEgress
from shipyard.runtime.guards import admit_input, guard_input, guard_output
from shipyard.runtime.hooks import RunHook, run_hooked
from shipyard.runtime.limits import calling_key
from shipyard.runtime.pseudonyms import PseudonymVault, load_pseudonyms, restoring, save_pseudonyms
from shipyard.runtime.recorder import Recorder
from shipyard.runtime.references import InputReferences
from shipyard.runtime.tenants import TenantPolicies, tenant_guards
from shipyard.stores.storable import without_lone_surrogates
from shipyard.telemetry.eventlog import BodyRedaction, current_redactor
from shipyard.telemetry.events import (
    Emitter,
    Event,
    EventProcessor,
    ProcessorFactory,
    Sink,
    current_step,
    new_span_id,
)
from shipyard.telemetry.tracecontext import TraceParent, new_trace_id

if TYPE_CHECKING:
    import httpx

log = structlog.get_logger(__name__)

_GUARDS_MAX = 1000
"""Guard policies kept ready (agents' and the server's, each with each tenant's additions)."""


@dataclass(frozen=True, slots=True)
class RunOutcome:
    run_id: str
    agent: str
    output: str
    usage: Usage
    trace_id: str
    latency_ms: float
    messages: tuple[Message, ...] = ()
    """What the run added to the conversation after its input (the answer, tool calls and
    results); a function agent's answer as one assistant message."""
    input: RunInput | None = None
    """The input as the guard policy let it in (redacted, pseudonymized...): what the model
    read, and what a session's history keeps."""
    pseudonyms: Pseudonyms | None = field(default=None, repr=False, compare=False)

    @property
    def answer(self) -> str:
        """The output as its caller gets it: pseudonyms restored (``output`` keeps the
        tokens, as the records, the history and a calling agent do)."""
        return self.output if self.pseudonyms is None else self.pseudonyms.restore(self.output)


@dataclass(frozen=True, slots=True)
class RunLimits:
    default_model: str
    run_timeout_s: float = 120.0
    tool_timeout_s: float = 30.0


class Invoker:
    """Runs an agent once: emits ``run.*`` events around it, enforces the run timeout, and
    answers only after the run's record is durable."""

    def __init__(
        self,
        agents: Mapping[str, AgentLike],
        recorder: Recorder | None,
        limits: RunLimits,
        observers: Sequence[Sink] = (),
        *,
        models: ModelResolver | None = None,
        processors: Sequence[ProcessorFactory] = (),
        hooks: Sequence[RunHook] = (),
        egress: ToolEgress | None = None,
        guards: GuardPolicy = NO_GUARDS,
        tenants: TenantPolicies | None = None,
    ) -> None:
        """``recorder``: where runs are recorded (``None``: nowhere, for ``run_agent``).
        ``observers`` see every event of every run (logs, metrics, traces); ``models``
        resolves every model call of every run (a resolver without wrappers if not given);
        ``processors`` make each run's event processors, which every event passes through, in
        order, before any sink (after the ``set_redactor`` hook's, if one is installed);
        ``hooks`` run before and after every agent run (``shipyard.runtime.hooks``); ``egress``
        makes each run's ``ctx.http`` (default: the egress policy with no exceptions and the
        default rules); ``guards``: the guard policy of agents without one of their own
        (``Agent.guards``), to which a tenant's policy (``tenants``) adds its own rules."""
        self._tenants = tenants
        self.egress = egress or ToolEgress()
        self._default_guards = guards
        self._guards: dict[GuardPolicy, RunGuard | None] = {}
        self._guards_by_id: dict[int, tuple[GuardPolicy, RunGuard | None]] = {}
        self._hooks = tuple(hooks)
        self.models = models or ModelResolver()
        self._processors = tuple(processors)
        self._agents = agents
        self._recorder = recorder
        self._limits = limits
        self._sinks = [*([recorder.sink] if recorder else []), *observers]
        self.calls: AgentCalls | None = None
        self.artifacts: ArtifactWriter | None = None
        """Where runs' ``ctx.artifacts`` go (set by the composition root)."""
        self.references: InputReferences | None = None
        """Reads the artifacts an input references (set by the composition root; None: an
        input that references one is refused)."""
        self.pseudonyms: PseudonymVault | None = None
        """Where pseudonymizing runs keep their mapping (set by the composition root; None:
        each run's mapping lives only as long as the run)."""
        """How this invoker's runs reach other agents (set by the composition root)."""
        self._inflight: set[asyncio.Task[Any]] = set()

    def model_for(self, name: str) -> str | ChatModel:
        """The model an agent's own calls use (its own, else the server default)."""
        return getattr(self.agent(name), "model", None) or self._limits.default_model

    def agent(self, name: str) -> AgentLike:
        found = self._agents.get(name)
        if found is None:
            raise AgentNotFound(f"no agent named {name!r}")
        return found

    async def invoke(
        self,
        request: RunRequest,
        *,
        sinks: Sequence[Sink] = (),
        stream_deltas: bool = False,
    ) -> RunOutcome:
        """Run ``request``; ``sinks`` also see its events (a stream), ``stream_deltas`` adds
        the model's ``llm.delta`` events to them. Called from inside another run (an agent's
        tool) without a ``parent``, the run is that run's child: same trace, parented to the
        calling step."""
        return await self.invoke_with(
            self.agent(request.agent), request, sinks=sinks, stream_deltas=stream_deltas
        )

    async def invoke_with(
        self,
        target: AgentLike,
        request: RunRequest,
        *,
        sinks: Sequence[Sink] = (),
        stream_deltas: bool = False,
    ) -> RunOutcome:
        """Run ``target`` (an agent the invoker need not serve: a session's compaction, a test's
        agent) for ``request``, through the same pipeline as every run."""
        request = _with_parent(request)
        parent = request.parent
        guard = await self._run_guard(target, request.tenant_id)
        guard = guard.for_run() if guard is not None else None  # its scans memoised per run
        pseudonyms = Pseudonyms() if guard is not None and guard.pseudonymizes else None
        emitter = Emitter(
            run_id=request.run_id,
            tenant_id=request.tenant_id,
            agent=target.name,
            trace_id=parent.trace_id if parent else new_trace_id(),
            span_id=new_span_id(),
            parent_span_id=parent.span_id if parent else None,
            sinks=[_storable(*self._sinks, *restoring(sinks, pseudonyms))],
            stream_deltas=stream_deltas,
            processors=self._run_processors(guard),
            session_id=request.session_id,
            task_id=request.task_id,
        )
        ctx = RunContext(
            run_id=request.run_id,
            tenant_id=request.tenant_id,
            agent=target.name,
            emitter=emitter,
            default_model=self._limits.default_model,
            request=request,
            models=self.models,
            http_factory=self._http_for(target),
            tool_timeout_s=self._limits.tool_timeout_s,
            metadata=dict(request.metadata),
            guard=guard,
            artifact_writer=self.artifacts,
            pseudonyms=pseudonyms,
        )
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            return await self._run(target, ctx)
        finally:
            if task is not None:
                self._inflight.discard(task)
            await ctx.close_http()
            if self._recorder is not None:
                await self._recorder.durable()

    def guard_for(self, target: AgentLike, tenant: GuardPolicy | None = None) -> RunGuard | None:
        """The guard policy of ``target``'s runs — its own or the server's, plus the tenant's
        rules — its detectors looked up (once per policy; a missing detector is a
        ``ConfigError``); None when it has no rules."""
        own = getattr(target, "guards", None)  # Agent and FunctionAgent have it; AgentLike not
        policy = own if isinstance(own, GuardPolicy) else self._default_guards
        if tenant is not None and tenant.rules:
            policy = GuardPolicy(
                rules=policy.rules + tenant.rules, hold_back=max(policy.hold_back, tenant.hold_back)
            )
            return self._guard_of(policy)
        known = self._guards_by_id.get(id(policy))  # the agent's or server's own: no hashing
        if known is not None and known[0] is policy:
            return known[1]
        if len(self._guards_by_id) >= _GUARDS_MAX:
            self._guards_by_id.clear()
        self._guards_by_id[id(policy)] = (policy, self._guard_of(policy))
        return self._guards_by_id[id(policy)][1]

    def _guard_of(self, policy: GuardPolicy) -> RunGuard | None:
        if policy not in self._guards:  # frozen, so equal policies share their detectors
            if len(self._guards) >= _GUARDS_MAX:
                self._guards.clear()
            self._guards[policy] = RunGuard(policy) if policy.rules else None
        return self._guards[policy]

    async def _run_guard(self, target: AgentLike, tenant_id: str) -> RunGuard | None:
        if self._tenants is None:
            return self.guard_for(target)
        return self.guard_for(target, tenant_guards(await self._tenants.policy(tenant_id)))

    def _http_for(self, target: AgentLike) -> Callable[[RunContext], httpx.AsyncClient]:
        rules = getattr(target, "egress", None)  # Agent and FunctionAgent have it; AgentLike not
        agent_rules = rules if isinstance(rules, EgressRules) else None
        egress = self.egress
        return lambda ctx: egress.client(ctx, agent_rules)

    async def drain(self, timeout_s: float) -> None:
        """Let runs in flight finish (at shutdown); cancel those still going after ``timeout_s``.

        A cancelled run is recorded as failed with code ``cancelled``, never left "running".
        """
        running = {t for t in self._inflight if t is not asyncio.current_task()}
        if not running:
            return
        _, late = await asyncio.wait(running, timeout=timeout_s)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=5)

    async def _run(self, target: AgentLike, ctx: RunContext) -> RunOutcome:
        started = time.perf_counter()
        judged = await self._begin(ctx)
        input = ctx.request.input
        timeout_s = self._timeout_s(ctx.request)
        limit = asyncio.timeout(timeout_s)
        step = current_step.set(ctx.step(ctx.emitter.span_id))  # a function agent's children
        calls = current_calls.set(self.calls)
        try:
            async with limit:
                if judged is not None:
                    admit_input(ctx, judged)
                    await save_pseudonyms(self.pseudonyms, ctx)
                if self._hooks:
                    result = await run_hooked(self._hooks, target, ctx)
                else:  # no coroutine of its own for the hooks' step when there are none
                    result = await target.run(ctx, input)
                if ctx.guard is not None:
                    result = guard_output(ctx, result)
                    await save_pseudonyms(self.pseudonyms, ctx)
                result = _storable_result(result, history=ctx.request.session_id is not None)
        except TimeoutError as exc:
            if not limit.expired():  # a timeout inside the agent (a client's), not ours
                raise self._failed(ctx, _agent_failure(target.name, exc), started) from exc
            timeout = RunTimeout(f"run exceeded the {timeout_s:g}s run timeout")
            raise self._failed(ctx, timeout, started) from None
        except asyncio.CancelledError as exc:
            reason = exc.args[0] if exc.args and isinstance(exc.args[0], str) else None
            self._failed(ctx, RunCancelled(reason or "the run was cancelled"), started)
            raise
        except (RunFailure, StoreError, RateLimited, InputBlocked) as exc:  # refusals as is
            raise self._failed(ctx, exc, started) from None
        except Exception as exc:
            raise self._failed(ctx, _agent_failure(target.name, exc), started) from exc
        finally:
            current_step.reset(step)
            current_calls.reset(calls)
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
            messages=_added(input, result),
            input=input,
            pseudonyms=ctx.pseudonyms,
        )

    async def _begin(self, ctx: RunContext) -> Verdict | None:
        """The run's start: a session's pseudonyms loaded (before its input is judged), the
        input judged, then ``run.started`` with the input as judged."""
        if ctx.pseudonyms is not None:
            await load_pseudonyms(self.pseudonyms, ctx)
        given = ctx.request.input
        referenced = references(given)
        if referenced and not isinstance(given, str):
            await self._read_references(ctx, given)
        judged = guard_input(ctx) if ctx.guard is not None else None
        parent_run_id = ctx.request.parent_run_id
        lineage = {"parent_run_id": parent_run_id} if parent_run_id else {}
        if (key_id := calling_key.get()) is not None:  # usage by key (records.usage)
            lineage["key_id"] = key_id
        recorded = _as_referenced(given, ctx.request.input) if referenced else ctx.request.input
        ctx.emit("run.started", input=_jsonable(recorded), metadata=ctx.metadata, **lineage)
        return judged

    async def _read_references(self, ctx: RunContext, given: list[Message]) -> None:
        """The artifacts the input references, read into it before the guard judges it (the
        run's record keeps the references: ``_as_referenced``)."""
        if self.references is None:
            raise ConfigError("this process has no artifact store to read referenced input from")
        resolved = await self.references.resolve(ctx.tenant_id, given)
        ctx.request = replace(ctx.request, input=resolved)

    def _run_processors(self, guard: RunGuard | None) -> list[EventProcessor]:
        redactor = current_redactor()
        first = [] if redactor is None else [BodyRedaction(redactor)]
        last = [OutputFilter(guard)] if guard is not None and guard.watches("output") else []
        return [*first, *(make() for make in self._processors), *last]

    def _timeout_s(self, request: RunRequest) -> float:
        limit = self._limits.run_timeout_s
        return limit if request.timeout_s is None else min(limit, request.timeout_s)

    @staticmethod
    def _failed(ctx: RunContext, error: ShipyardError, started: float) -> ShipyardError:
        """The run recorded as failed; the error, for the caller, says which run it was (its
        ``details`` carry ``run_id`` and ``trace_id``, to look the run up); what it quotes is
        made servable, as the run's events are (a provider's message may hold a lone surrogate)."""
        error.message, error.details = without_lone_surrogates((error.message, error.details))
        ctx.emit(
            "run.failed",
            error=error.to_dict(),
            usage=ctx.usage.model_dump(),
            latency_ms=_ms_since(started),
        )
        which = {"run_id": ctx.run_id, "trace_id": ctx.emitter.trace_id}
        details = error.details
        if isinstance(details, dict):
            error.details = {**details, **which}
        else:
            error.details = which if details is None else {"details": details, **which}
        return error


def _with_parent(request: RunRequest) -> RunRequest:
    """``request``, parented to the calling step when it comes from inside a run of its
    tenant and names no parent of its own."""
    step = current_step.get()
    if request.parent is not None or step is None or step.tenant_id != request.tenant_id:
        return request
    return replace(
        request,
        parent=TraceParent(step.trace_id, step.span_id),
        parent_run_id=request.parent_run_id or step.run_id,
    )


def _agent_failure(agent: str, exc: Exception) -> RunFailure:
    """What the caller learns of an agent's own error: its kind, never its message (which may
    hold data or secrets); the full error goes to the server log."""
    if isinstance(exc, ShipyardError):  # our own errors carry messages meant for callers
        return RunFailure(f"agent {agent} failed: {exc.message}")
    log.error("agent failed", agent=agent, exc_info=exc)
    return RunFailure(f"agent {agent} failed ({type(exc).__name__}); see the server log")


def _added(input: RunInput, result: RunResult) -> tuple[Message, ...]:
    messages = result.messages
    if isinstance(input, str) and messages and isinstance(messages[0], UserMessage):
        messages = messages[1:]  # the loop counts a text input as its first message
    return messages or (AssistantMessage(content=result.output),)


def _storable_result(result: RunResult, *, history: bool) -> RunResult:
    """The answer with its text storable and servable, as its events are (``_storable``). Its
    messages only when they become a session's ``history``: a stateless run's are not kept, and
    checking the whole conversation cost a stateless invoke ~15 µs."""
    if not history:
        output = without_lone_surrogates(result.output)
        return result if output is result.output else dataclasses.replace(result, output=output)
    output, messages = without_lone_surrogates((result.output, result.messages))
    if output is result.output and messages is result.messages:
        return result
    return dataclasses.replace(result, output=output, messages=messages)


_CHECKED_ELSEWHERE = frozenset({"run.started", "llm.request"})
"""Events whose data is the run's input and history: refused at the edge when unstorable, and
made of what earlier steps produced, which passed here already. Skipping them halves the cost
(they carry the whole conversation)."""


def _storable(*sinks: Sink) -> Sink:
    """The sinks, given events that every store can hold and every answer can carry: a lone
    surrogate an agent or a model produced becomes U+FFFD (``without_lone_surrogates``)."""

    def sink(event: Event) -> None:
        if event.type in _CHECKED_ELSEWHERE:
            for each in sinks:
                each(event)
            return
        data = without_lone_surrogates(event.data)
        if data is not event.data:
            event = event.model_copy(update={"data": data})
        for each in sinks:
            each(event)

    return sink


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _as_referenced(given: RunInput, judged: RunInput) -> RunInput:
    """The input as the records keep it: the artifact references as given, the other messages
    as the guard let them in."""
    if isinstance(given, str) or isinstance(judged, str):
        return judged
    return [g if isinstance(g, ArtifactInput) else j for g, j in zip(given, judged, strict=True)]


_MESSAGES = TypeAdapter(list[Any])
"""Dumps a conversation in one call (each message by its own model, as ``model_dump`` does):
half the time of a dump per message, which a session turn pays on its whole history."""


def _jsonable(input: RunInput) -> Any:
    return input if isinstance(input, str) else _MESSAGES.dump_python(input, exclude_none=True)
