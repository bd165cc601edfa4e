"""``Router``: a model reference (``router:<name>``) that picks a candidate on every call.

``App(routers=[Router("smart", candidates=[...], strategy=Learned())])`` registers it; an agent,
a session, a task or the default model then names ``router:smart`` where it would name a
model. Each call (not each run) is decided anew, so one run can plan on a strong model and fill
in on a cheap one. The chosen candidate is called on one of its deployments (retries, circuit
breakers), then on the candidate's other deployments, then on the router's ``fallbacks`` in
order; a cascade escalates an answer that fails its checks to the next dearer candidate. Each
call ends with one ``llm.route`` event: router, candidates, chosen, score, reason, what was
tried, and the spend saved against calling the strongest candidate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence

from shipyard.errors import ConfigError, ModelError, ShipyardError
from shipyard.models.base import (
    ChatModel,
    ModelRequest,
    ModelResponse,
    StreamItem,
    TextDelta,
    Usage,
)
from shipyard.models.prices import price
from shipyard.models.router.config import Candidate, Resilience, RouterConfig, check
from shipyard.models.router.deployments import Breaker, Deployment, DeploymentPool
from shipyard.models.router.scope import RouteScope, route_scope
from shipyard.models.router.strategies import (
    Decision,
    Learned,
    RouteInput,
    Strategy,
    check_models,
)
from shipyard.models.spend import degraded
from shipyard.telemetry.tracecontext import TraceParent

PREFIX = "router:"


class Router:
    """A named router: its candidates (model references, or ``Candidate``s with deployments
    and prices), its ``strategy`` (``Rules``, ``Learned`` — the default — or ``Cascade``), the
    ``strong`` candidate savings are measured against (default: the dearest), ``fallbacks``
    (references tried in order when the chosen candidate fails) and ``resilience``."""

    def __init__(
        self,
        name: str,
        candidates: Sequence[Candidate | str],
        strategy: Strategy | None = None,
        *,
        strong: str | None = None,
        fallbacks: Sequence[str] = (),
        resilience: Resilience | None = None,
    ) -> None:
        self.config = check(name, candidates, strong, fallbacks, resilience or Resilience())
        self.strategy: Strategy = strategy or Learned()
        check_models(self.config, self.strategy)

    @property
    def name(self) -> str:
        return self.config.name

    def build(self, resolve: Callable[[str], ChatModel]) -> RouterModel:
        """The router's model, its candidates' deployments made with ``resolve``."""
        return RouterModel(self.config, self.strategy, resolve)


def check_router_refs(agents: Iterable[object], routers: Sequence[Router]) -> None:
    """Every ``router:<name>`` an agent names is registered (``ConfigError`` at start)."""
    names = {r.name for r in routers}
    if len(names) != len(routers):
        raise ConfigError("two routers share a name")
    for agent in agents:
        model = getattr(agent, "model", None)
        if (
            isinstance(model, str)
            and model.startswith(PREFIX)
            and model[len(PREFIX) :] not in names
        ):
            raise ConfigError(
                f"agent {getattr(agent, 'name', '?')}: no router named {model[len(PREFIX) :]!r}; "
                "register it with App(routers=[...])"
            )


class RouterModel:
    """The ``ChatModel`` a ``router:<name>`` reference resolves to."""

    def __init__(
        self, config: RouterConfig, strategy: Strategy, resolve: Callable[[str], ChatModel]
    ) -> None:
        self.config, self.strategy = config, strategy
        res = config.resilience
        extra = [Candidate(ref) for ref in config.fallbacks if ref not in _models(config)]
        self.pools = {
            c.model: DeploymentPool(
                c,
                [
                    Deployment(
                        ref, resolve(ref), Breaker(res.breaker_failures, res.breaker_reset_s)
                    )
                    for ref in c.targets
                ],
                res,
            )
            for c in (*config.candidates, *extra)
        }

    @property
    def name(self) -> str:
        return PREFIX + self.config.name

    def decide(self, request: ModelRequest, cheaper_only: bool = False) -> Decision:
        """The decision for ``request`` in the current run (its tenant, agent, metadata)."""
        scope = route_scope.get() or RouteScope()
        return self.strategy.decide(self.config, RouteInput(request, scope), cheaper_only)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        scope = route_scope.get() or RouteScope()
        cheaper_only = scope.cheaper_only or degraded()  # the budget's ``degrade`` policy
        decision = self.strategy.decide(self.config, RouteInput(request, scope), cheaper_only)
        trail = _Trail(decision)
        try:
            async for item in self._answer(request, decision, trail):
                if isinstance(item, ModelResponse):
                    self._emit(scope, request, trail, item, None)
                yield item
        except ShipyardError as exc:
            self._emit(scope, request, trail, None, exc)
            raise

    async def _answer(
        self, request: ModelRequest, decision: Decision, trail: _Trail
    ) -> AsyncIterator[StreamItem]:
        """The routed call's stream: a cascade's accepted answer as one delta, else the
        chosen candidate's (or a fallback's) stream as it comes."""
        if not decision.escalate:
            async for item in self._with_fallbacks(request, decision.chosen, trail):
                yield item
            return
        final = await self._cascade(request, decision, trail)
        if final.message.content:
            yield TextDelta(text=final.message.content)
        yield final

    async def _with_fallbacks(
        self, request: ModelRequest, model: str, trail: _Trail
    ) -> AsyncIterator[StreamItem]:
        """The chosen candidate's stream, else each fallback's, in order."""
        order = [model, *(m for m in self.config.fallbacks if m != model)]
        errors: list[str] = []
        for candidate in order:
            opened = await self._open(request, candidate, trail, errors)
            if opened is None:
                continue
            first, rest = opened
            reprice = _pricer(self.pools[candidate].candidate)
            yield reprice(first)
            async for item in rest:
                yield reprice(item)
            return
        raise ModelError(f"{self.name}: every candidate failed: {'; '.join(errors)}")

    async def _open(
        self, request: ModelRequest, model: str, trail: _Trail, errors: list[str]
    ) -> tuple[StreamItem, AsyncIterator[StreamItem]] | None:
        """The first item of a call of ``model`` on its first deployment that answers."""
        pool = self.pools[model]
        live = pool.ordered()
        if not live:
            errors.append(f"{model}: circuit open")
            trail.failed(model, None, "circuit open")
        for deployment in live:
            try:
                opened = await pool.open(deployment, request)
            except ShipyardError as exc:
                if not isinstance(exc, ModelError):
                    raise
                errors.append(exc.message)
                trail.failed(model, deployment.ref, exc.message)
                continue
            except Exception as exc:  # a provider's own exception: this deployment failed
                errors.append(f"{deployment.ref}: {type(exc).__name__}: {exc}")
                trail.failed(model, deployment.ref, f"{type(exc).__name__}: {exc}")
                continue
            trail.answered(model, deployment.ref)
            return opened
        return None

    async def _cascade(
        self, request: ModelRequest, decision: Decision, trail: _Trail
    ) -> ModelResponse:
        """Each model of the chain in turn until an answer passes every check."""
        final: ModelResponse | None = None
        spent = Usage()
        for model in (decision.chosen, *decision.escalate):
            items = [item async for item in self._with_fallbacks(request, model, trail)]
            final = items[-1] if items and isinstance(items[-1], ModelResponse) else None
            if final is None:
                raise ModelError(f"{self.name}: {model} ended its stream without a response")
            spent = spent + final.usage
            final = final.model_copy(update={"usage": spent})  # the run pays for every try
            failed = next((why for c in decision.checks if (why := c(request, final))), None)
            if failed is None:
                return final
            trail.escalations.append(f"{model}: {failed}")
        assert final is not None
        return final

    def _emit(
        self,
        scope: RouteScope,
        request: ModelRequest,
        trail: _Trail,
        final: ModelResponse | None,
        error: ShipyardError | None,
    ) -> None:
        if scope.emitter is None:
            return
        parent = TraceParent.parse(request.traceparent)
        data = trail.data(self.config, final)
        if error is not None:
            data["error"] = {"code": error.code, "message": error.message[:300]}
        scope.emitter.emit("llm.route", parent.span_id if parent else None, **data)


def _models(config: RouterConfig) -> set[str]:
    return {c.model for c in config.candidates}


class _Trail:
    """What happened on one routed call, for its ``llm.route`` event."""

    __slots__ = ("chosen", "decision", "deployment", "escalations", "tried")

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        self.chosen: str | None = None
        self.deployment: str | None = None
        self.tried: list[dict[str, str]] = []
        self.escalations: list[str] = []

    def failed(self, model: str, deployment: str | None, error: str) -> None:
        self.tried.append({"model": model, "deployment": deployment or "", "error": error[:200]})

    def answered(self, model: str, deployment: str) -> None:
        self.chosen, self.deployment = model, deployment

    def data(self, config: RouterConfig, final: ModelResponse | None) -> dict[str, object]:
        decision = self.decision
        reason = decision.reason
        if self.escalations:
            reason += "; escalated: " + ", ".join(self.escalations)
        if self.chosen is not None and self.chosen != decision.chosen and not self.escalations:
            reason += f"; fallback from {decision.chosen}"
        out: dict[str, object] = {
            "router": config.name,
            "candidates": [c.model for c in config.candidates],
            "chosen": self.chosen,
            "decided": decision.chosen,
            "score": decision.score,
            "reason": reason,
            "deployment": self.deployment,
            "failures": self.tried,
        }
        if final is not None:
            out["saved_usd"] = _saved(config, final)
        return out


def _pricer(candidate: Candidate) -> Callable[[StreamItem], StreamItem]:
    """Prices a candidate's answer at the candidate's own price, when it states one."""
    if candidate.price is None:
        return lambda item: item
    per_in, per_out = candidate.price

    def reprice(item: StreamItem) -> StreamItem:
        if not isinstance(item, ModelResponse):
            return item
        usage = item.usage
        cost = (usage.prompt_tokens * per_in + usage.completion_tokens * per_out) / 1_000_000
        return item.model_copy(update={"usage": usage.model_copy(update={"cost_usd": cost})})

    return reprice


def _saved(config: RouterConfig, final: ModelResponse) -> float:
    """What the strongest candidate would have cost for the same tokens, less the real cost
    (negative when a fallback or cascade spent more)."""
    usage = final.usage
    strong = config.strong
    if strong.price is not None:
        per_in, per_out = strong.price
        cost = (usage.prompt_tokens * per_in + usage.completion_tokens * per_out) / 1_000_000
    else:
        cost = price(strong.model, usage.prompt_tokens, usage.completion_tokens).cost_usd
    return round(cost - usage.cost_usd, 10)
