"""Prometheus metrics: the event stream, the HTTP surface, the worker and a few sampled gauges.

``Metrics`` owns its own ``CollectorRegistry`` (never the global one), so several in one
process — tests, an app and its worker — do not collide. What feeds it:

- ``sink`` — every run's events (``llm.response``, ``tool.result``, ``guard.flag``,
  ``egress.request``, ``run.completed`` / ``run.failed``; the other kinds are skipped at the
  first comparison);
- ``webhook_egress`` — webhook attempts, which happen outside runs;
- ``http_request`` / ``websocket_opened`` / ``websocket_closed`` — the API's ASGI middleware;
- ``task_claimed`` / ``task_finished`` / ``task_retried`` — the worker;
- ``start`` — a background sampler of queue depths, and ``shipyard_active_sessions`` read at
  scrape time; with a ``port``, an unauthenticated exposition server (a thread).

Labels are bounded sets only: agent, model and tool names come from the configured code
(a tool name the model made up is ``unknown``), tenants from the tenants table, error codes
and statuses from fixed lists, egress rules from ``<layer>.<field>`` names. Never a run,
session, task or key id, nor an outbound request's host (the model may choose it).

The sink runs on every run's hot path: each labelled child is looked up once and then kept
in a dict keyed by its label values.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    start_http_server,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from shipyard.telemetry.events import Event

log = structlog.get_logger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
SAMPLE_S = 5.0
"""How often the queue depths are sampled (not at scrape time: a scrape must stay cheap)."""
UNKNOWN_TOOL = "unknown"

_RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_MODEL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TOOL_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_EGRESS_LAYERS = frozenset({"server", "agent", "tenant", "webhook"})
_EGRESS_FIELDS = frozenset(
    {"hosts", "schemes", "ports", "methods", "max_response_bytes", "timeout_s"}
)


class QueueDepth(Protocol):
    """What the sampler reads: the broker's ``QueueStats.depth``."""

    async def depth(self, queue: str = ...) -> int: ...


def execution_model(event: Event) -> str:
    """``task`` (through the broker, a session's turn included), ``session`` or ``stateless``."""
    if event.task_id is not None:
        return "task"
    return "stateless" if event.session_id is None else "session"


class Metrics:
    """The process's metrics; ``render`` gives the Prometheus text exposition."""

    def __init__(self, *, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.port, self.host = port, host
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._define_runs()
        self._define_surface()
        self._children: dict[tuple[Any, ...], Any] = {}
        self._sampler: asyncio.Task[None] | None = None
        self._server: Any = None

    def _define_runs(self) -> None:
        reg = self.registry
        self.runs = Counter(
            "shipyard_runs", "Finished runs.", ["agent", "execution", "outcome"], registry=reg
        )
        self.run_seconds = Histogram(
            "shipyard_run_duration_seconds", "Run latency.", ["agent", "execution"],
            buckets=_RUN_BUCKETS, registry=reg,
        )  # fmt: skip
        self.run_errors = Counter(
            "shipyard_run_errors", "Failed runs by error code.", ["agent", "code"], registry=reg
        )
        self.tokens = Counter(
            "shipyard_llm_tokens", "Model tokens; type is prompt or completion.",
            ["model", "agent", "tenant", "type"], registry=reg,
        )  # fmt: skip
        self.cost = Counter(
            "shipyard_llm_cost_usd", "Model spend in US dollars.", ["model", "agent", "tenant"],
            registry=reg,
        )  # fmt: skip
        self.model_seconds = Histogram(
            "shipyard_llm_request_duration_seconds", "Model call latency.", ["model"],
            buckets=_MODEL_BUCKETS, registry=reg,
        )  # fmt: skip
        self.tool_seconds = Histogram(
            "shipyard_tool_duration_seconds", "Tool call latency.", ["agent", "tool"],
            buckets=_TOOL_BUCKETS, registry=reg,
        )  # fmt: skip
        self.tool_errors = Counter(
            "shipyard_tool_errors", "Failed tool calls; kind is the tool error's kind.",
            ["agent", "tool", "kind"], registry=reg,
        )  # fmt: skip
        self.guard_flags = Counter(
            "shipyard_guard_flags", "Guard decisions (guard.flag and guard.block events).",
            ["guard", "action"], registry=reg,
        )  # fmt: skip
        self.cache_hits = Counter(
            "shipyard_llm_cache_hits", "Model calls answered by a model cache (cache: exact or "
            "semantic).", ["model", "tenant", "cache"], registry=reg,
        )  # fmt: skip
        self.cache_saved = Counter(
            "shipyard_llm_cache_saved_usd", "What the model caches' answers would have cost.",
            ["model", "tenant", "cache"], registry=reg,
        )  # fmt: skip
        self.cache_misses = Counter(
            "shipyard_llm_cache_misses", "Model calls the semantic cache looked up and could "
            "not answer.", ["model", "tenant", "cache"], registry=reg,
        )  # fmt: skip
        self._define_egress()
        self._define_router()

    def _define_router(self) -> None:
        """The model router's decisions (``llm.route`` events; docs/routing.md)."""
        self.router_decisions = Counter(
            "shipyard_router_decisions",
            "Routed model calls, by router and the model that answered.",
            ["router", "model"], registry=self.registry,
        )  # fmt: skip
        self.router_saved = Gauge(  # a gauge: a fallback to a dearer model saves less than 0
            "shipyard_router_saved_usd",
            "Estimated spend saved by routing since start, against always calling the strongest "
            "candidate (the same tokens at its price, less the real cost).",
            ["router"], registry=self.registry,
        )  # fmt: skip

    def _route(self, event: Event) -> None:
        data = event.data
        router = str(data.get("router") or "unknown")
        model = str(data.get("chosen") or "none")
        self._child(self.router_decisions, ("route", router, model)).inc()
        saved = data.get("saved_usd")
        if isinstance(saved, int | float) and saved:
            self._child(self.router_saved, ("route_saved", router)).inc(saved)

    def _define_egress(self) -> None:
        reg = self.registry
        self.egress_requests = Counter(
            "shipyard_egress_requests", "Outbound requests; source is tool or webhook, outcome "
            "allowed, denied (by a rule or a cap) or error (allowed, then failed).",
            ["source", "agent", "method", "outcome"], registry=reg,
        )  # fmt: skip
        self.egress_denials = Counter(
            "shipyard_egress_denials", "Outbound requests the egress policy refused or cut "
            "off, by rule (address, url, or <layer>.<field>).", ["source", "rule"],
            registry=reg,
        )  # fmt: skip
        self.egress_seconds = Histogram(
            "shipyard_egress_request_duration_seconds", "Outbound request latency.",
            ["source"], buckets=_TOOL_BUCKETS, registry=reg,
        )  # fmt: skip
        self.egress_bytes = Counter(
            "shipyard_egress_response_bytes", "Answer bytes read by outbound requests.",
            ["source"], registry=reg,
        )  # fmt: skip

    def _define_surface(self) -> None:
        reg = self.registry
        self.http_requests = Counter(
            "shipyard_http_requests", "HTTP requests; route is the matched route's template.",
            ["method", "route", "status"], registry=reg,
        )  # fmt: skip
        self.http_seconds = Histogram(
            "shipyard_http_request_duration_seconds",
            "HTTP latency, until the last byte of the response (streams included).",
            ["method", "route", "status"], buckets=_HTTP_BUCKETS, registry=reg,
        )  # fmt: skip
        self.websockets = Gauge(
            "shipyard_websocket_connections", "Open (accepted) WebSocket connections.",
            registry=reg,
        )  # fmt: skip
        self.active_sessions = Gauge(
            "shipyard_active_sessions", "Sessions with a turn running in this process.",
            registry=reg,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "shipyard_queue_depth", f"Messages waiting in a broker queue (sampled every "
            f"{SAMPLE_S:g}s).", ["queue"], registry=reg,
        )  # fmt: skip
        self.task_lag = Histogram(
            "shipyard_task_lag_seconds", "From a task's creation to its first claim by a worker.",
            ["agent"], buckets=_LAG_BUCKETS, registry=reg,
        )  # fmt: skip
        self.tasks = Counter(
            "shipyard_tasks_finished", "Tasks that reached a final status, by this worker.",
            ["agent", "status"], registry=reg,
        )  # fmt: skip
        self.task_retries = Counter(
            "shipyard_task_retries", "Failed task attempts queued again.", ["agent"], registry=reg
        )

    # -- the event sink (hot path) ------------------------------------------------------------

    def sink(self, event: Event) -> None:
        kind = event.type
        if kind == "llm.response":
            self._model_call(event)
        elif kind == "tool.result":
            self._tool_result(event)
        elif kind == "run.completed" or kind == "run.failed":
            self._run_ended(event)
        elif kind == "guard.flag" or kind == "guard.block":
            self._guard_flag(event)
        elif kind == "egress.request":
            self._egress("tool", event.agent, event.data)
        elif kind == "llm.cached" or kind == "llm.cache_miss":
            self._cache(event)
        elif kind == "llm.route":
            self._route(event)

    def _cache(self, event: Event) -> None:
        data = event.data
        labels = (data.get("model") or "unknown", event.tenant_id, data.get("cache") or "exact")
        if event.type == "llm.cache_miss":
            self._child(self.cache_misses, ("cache_miss", *labels)).inc()
            return
        self._child(self.cache_hits, ("cache_hit", *labels)).inc()
        saved = self._child(self.cache_saved, ("cache_saved", *labels))
        saved.inc(data.get("saved_usd") or 0.0)

    def _run_ended(self, event: Event) -> None:
        ok = event.type == "run.completed"
        key = ("run", event.agent, event.task_id is None, event.session_id is None, ok)
        children = self._children.get(key)
        if children is None:
            execution = execution_model(event)
            outcome = "succeeded" if ok else "failed"
            children = self._children[key] = (
                self.runs.labels(event.agent, execution, outcome),
                self.run_seconds.labels(event.agent, execution),
            )
        data = event.data
        children[0].inc()
        children[1].observe(data.get("latency_ms", 0.0) / 1000)
        if not ok:
            code = (data.get("error") or {}).get("code") or "unknown"
            self._child(self.run_errors, ("run_error", event.agent, code)).inc()

    def _model_call(self, event: Event) -> None:
        data = event.data
        model = data.get("model") or "unknown"
        key = ("llm", model, event.agent, event.tenant_id)
        children = self._children.get(key)
        if children is None:
            agent, tenant = event.agent, event.tenant_id
            children = self._children[key] = (
                self.tokens.labels(model, agent, tenant, "prompt"),
                self.tokens.labels(model, agent, tenant, "completion"),
                self.cost.labels(model, agent, tenant),
                self.model_seconds.labels(model),
            )
        prompt, completion, cost, seconds = children
        prompt.inc(data.get("prompt_tokens") or 0)
        completion.inc(data.get("completion_tokens") or 0)
        cost.inc(data.get("cost_usd") or 0.0)
        seconds.observe(data.get("latency_ms", 0.0) / 1000)

    def _tool_result(self, event: Event) -> None:
        data = event.data
        kind = data.get("error_kind")
        tool = UNKNOWN_TOOL if kind == "unknown_tool" else data.get("name") or UNKNOWN_TOOL
        self._child(self.tool_seconds, ("tool", event.agent, tool)).observe(
            data.get("latency_ms", 0.0) / 1000
        )
        if not data.get("ok", True):
            key = ("tool_error", event.agent, tool, kind or "error")
            self._child(self.tool_errors, key).inc()

    def _guard_flag(self, event: Event) -> None:
        data = event.data  # each decision is one event, streamed or not (docs/guards.md)
        key = ("guard", data.get("guard") or "unknown", data.get("action") or "unknown")
        self._child(self.guard_flags, key).inc()

    def webhook_egress(self, record: Any) -> None:
        """A webhook attempt's ``EgressRecord`` (webhooks are delivered outside runs)."""
        self._egress("webhook", "", record.data())

    def _egress(self, source: str, agent: str, data: dict[str, Any]) -> None:
        method = str(data.get("method"))
        if method not in _METHODS:
            method = "other"
        allowed = bool(data.get("allowed"))
        outcome = "denied" if not allowed else "error" if data.get("error") else "allowed"
        self._child(self.egress_requests, ("egress", source, agent, method, outcome)).inc()
        self._child(self.egress_seconds, ("egress_s", source)).observe(
            (data.get("latency_ms") or 0.0) / 1000
        )
        read = data.get("bytes") or 0
        if read:
            self._child(self.egress_bytes, ("egress_bytes", source)).inc(read)
        if not allowed:
            self._child(self.egress_denials, ("egress_denied", source, _rule(data))).inc()

    def _child(self, metric: Any, key: tuple[str, ...]) -> Any:
        """The child of ``metric`` for ``key[1:]`` (``key[0]`` names the metric in the cache)."""
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*key[1:])
        return child

    # -- the HTTP surface -----------------------------------------------------------------------

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in _METHODS:  # before the cache: made-up methods must not grow it
            method = "other"
        key = ("http", method, route, status)
        children = self._children.get(key)
        if children is None:
            labels = (method, route, str(status))
            children = self._children[key] = (
                self.http_requests.labels(*labels),
                self.http_seconds.labels(*labels),
            )
        children[0].inc()
        children[1].observe(seconds)

    def websocket_opened(self) -> None:
        self.websockets.inc()

    def websocket_closed(self) -> None:
        self.websockets.dec()

    # -- tasks (the worker) ---------------------------------------------------------------------

    def task_claimed(self, agent: str, lag_s: float) -> None:
        self._child(self.task_lag, ("task_lag", agent)).observe(max(lag_s, 0.0))

    def task_finished(self, agent: str, status: str) -> None:
        self._child(self.tasks, ("task", agent, status)).inc()

    def task_retried(self, agent: str) -> None:
        self._child(self.task_retries, ("task_retry", agent)).inc()

    # -- exposition -----------------------------------------------------------------------------

    def render(self, tenant: str | None = None) -> bytes:
        """The text exposition; with ``tenant``, series labelled with another tenant are left
        out (a tenant's key sees its own usage and the process-wide series)."""
        if tenant is None:
            return generate_latest(self.registry)
        return generate_latest(_OneTenant(self.registry, tenant))

    async def start(
        self,
        *,
        queues: QueueDepth | None = None,
        names: Sequence[str] = ("tasks",),
        active_sessions: Callable[[], float] | None = None,
        sample_s: float = SAMPLE_S,
    ) -> None:
        """Sample ``queues``' depth of ``names`` every ``sample_s``; read ``active_sessions``
        at scrape time; serve the exposition on ``port`` if one is set."""
        if active_sessions is not None:
            self.active_sessions.set_function(active_sessions)
        if queues is not None and self._sampler is None:
            self._sampler = asyncio.create_task(self._sample(queues, names, sample_s))
        if self.port is not None and self._server is None:
            self._server, _ = start_http_server(self.port, self.host, registry=self.registry)
            log.info("metrics exposed", url=f"http://{self.host}:{self.port}/metrics")

    async def close(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        if self._server is not None:
            server, self._server = self._server, None
            await asyncio.to_thread(server.shutdown)
            server.server_close()

    async def _sample(self, queues: QueueDepth, names: Sequence[str], every_s: float) -> None:
        gauges = {name: self.queue_depth.labels(name) for name in names}
        failing = False
        while True:
            try:
                for name, gauge in gauges.items():
                    gauge.set(await queues.depth(name))
            except Exception as exc:  # the broker may come back; the sampler must not die
                if not failing:
                    log.warning("queue depth unavailable", error=str(exc))
                failing = True
            else:
                failing = False
            await asyncio.sleep(every_s)


def _rule(data: dict[str, Any]) -> str:
    """An egress denial's rule as a label: one of a fixed set, else ``other``."""
    rule = str(data.get("rule"))
    if rule in ("address", "url"):
        return rule
    layer, _, field = rule.partition(".")
    return rule if layer in _EGRESS_LAYERS and field in _EGRESS_FIELDS else "other"


class _OneTenant(Collector):
    """The registry's families without the samples of other tenants."""

    def __init__(self, registry: CollectorRegistry, tenant: str) -> None:
        self._registry = registry
        self._tenant = tenant

    def collect(self) -> Iterable[Metric]:
        return self._filter(self._registry.collect())

    def _filter(self, families: Iterable[Metric]) -> Iterator[Metric]:
        tenant = self._tenant
        for family in families:
            kept = [s for s in family.samples if s.labels.get("tenant", tenant) == tenant]
            if len(kept) == len(family.samples):
                yield family
            elif kept:
                copy = Metric(family.name, family.documentation, family.type, family.unit)
                copy.samples = kept
                yield copy
