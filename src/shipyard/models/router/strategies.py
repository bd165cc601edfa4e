"""How a router picks: ``Rules``, ``Learned`` and ``Cascade``.

A strategy's ``decide(config, call, cheaper_only)`` is pure and synchronous (it runs on every
model call): it names the candidate to call first, the score it saw, the reason, and — for a
cascade — the candidates to escalate to when an answer fails the cascade's checks.
``cheaper_only`` (the governor's ``degrade`` policy) keeps to candidates cheaper than the
strategy's own pick.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import jsonschema  # type: ignore[import-untyped]

from shipyard.errors import ConfigError
from shipyard.models.base import ModelRequest, ModelResponse, ToolMessage, UserMessage
from shipyard.models.router.config import RouterConfig
from shipyard.models.router.learned_model import RouterWeights, default_weights
from shipyard.models.router.scope import RouteScope


@dataclass(frozen=True, slots=True)
class RouteInput:
    """What a decision may look at: the request and the run it is made for."""

    request: ModelRequest
    scope: RouteScope

    @property
    def prompt(self) -> str:
        """The last user message (what the model is asked now)."""
        for message in reversed(self.request.messages):
            if isinstance(message, UserMessage):
                return message.content
        return ""

    @property
    def has_tool_results(self) -> bool:
        return any(isinstance(m, ToolMessage) for m in self.request.messages)

    @property
    def prompt_chars(self) -> int:
        return sum(len(getattr(m, "content", None) or "") for m in self.request.messages)


Check = Callable[[ModelRequest, ModelResponse], str | None]
"""A cascade check: why an answer is not good enough, or ``None`` when it is."""


@dataclass(frozen=True, slots=True)
class Decision:
    chosen: str
    reason: str
    score: float | None = None
    escalate: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()


class Strategy(Protocol):
    def decide(self, config: RouterConfig, call: RouteInput, cheaper_only: bool) -> Decision: ...


def _cheaper(config: RouterConfig, pick: str, cheaper_only: bool) -> tuple[str, bool]:
    """``pick``, or under ``cheaper_only`` the dearest candidate cheaper than it."""
    if not cheaper_only:
        return pick, False
    return config.cheaper_than(pick)[-1].model, True


# --- rules ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """Route to ``model`` when every condition given holds (those left out always hold).
    ``tools``: True when the request offers any tool, False when none, or tool names of
    which one must be offered; ``tool_results``: whether the request carries tool results (a
    run filling in after its plan); ``metadata``: values the run's metadata must have."""

    model: str
    tenant: Sequence[str] | None = None
    agent: Sequence[str] | None = None
    tools: bool | Sequence[str] | None = None
    tool_results: bool | None = None
    min_prompt_chars: int | None = None
    max_prompt_chars: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def matches(self, call: RouteInput) -> bool:
        scope, size = call.scope, call.prompt_chars
        offered = {t.name for t in call.request.tools}
        return (
            (self.tenant is None or scope.tenant_id in self.tenant)
            and (self.agent is None or scope.agent in self.agent)
            and _tools_match(self.tools, offered)
            and (self.tool_results is None or self.tool_results == call.has_tool_results)
            and (self.min_prompt_chars is None or size >= self.min_prompt_chars)
            and (self.max_prompt_chars is None or size <= self.max_prompt_chars)
            and all(scope.metadata.get(k) == v for k, v in self.metadata.items())
        )


def _tools_match(want: bool | Sequence[str] | None, offered: set[str]) -> bool:
    if want is None:
        return True
    if isinstance(want, bool):
        return want == bool(offered)
    return bool(offered & set(want))


@dataclass(frozen=True, slots=True)
class Rules:
    """The first matching rule's model, else ``default`` (else the strongest candidate)."""

    rules: Sequence[Rule] = ()
    default: str | None = None

    def decide(self, config: RouterConfig, call: RouteInput, cheaper_only: bool) -> Decision:
        for index, rule in enumerate(self.rules):
            if rule.matches(call):
                chosen, cut = _cheaper(config, rule.model, cheaper_only)
                return Decision(chosen, f"rule {index}" + (", cheaper only" if cut else ""))
        chosen, cut = _cheaper(config, self.default or config.strong.model, cheaper_only)
        return Decision(chosen, "default" + (", cheaper only" if cut else ""))


# --- learned -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Learned:
    """A classifier's score of the prompt ("the strong model is needed", in [0, 1]) against a
    threshold: at or above it the strongest candidate, below it the cheapest — or, with more
    candidates, the band of [0, threshold) the score falls in, cheapest lowest.

    The threshold is ``threshold`` if given; else the one that sent ``strong_share`` of the
    held-out prompts to the strong model; else the one that recovered ``quality`` of the quality
    gap in cross-validation (0.8: 80%; the default)."""

    threshold: float | None = None
    strong_share: float | None = None
    quality: float | None = None
    weights: RouterWeights | None = None
    _cut: list[float] = field(default_factory=list, init=False, repr=False, compare=False)

    @property
    def model(self) -> RouterWeights:
        return self.weights or default_weights()

    @property
    def cutoff(self) -> float:
        """The threshold (worked out once: decisions are on the hot path)."""
        if not self._cut:
            self._cut.append(self._threshold())
        return self._cut[0]

    def _threshold(self) -> float:
        if self.threshold is not None:
            return self.threshold
        if self.strong_share is not None:
            return self.model.threshold_for_share(self.strong_share)
        return self.model.threshold_for_quality(0.8 if self.quality is None else self.quality)

    def decide(self, config: RouterConfig, call: RouteInput, cheaper_only: bool) -> Decision:
        score, cutoff = self.model.score(call.prompt), self.cutoff
        if score >= cutoff:
            pick, reason = config.strong.model, f"score {score:.3f} >= {cutoff:.3f}"
        else:
            below = [c for c in config.candidates if c is not config.strong] or [config.strong]
            band = min(int(score / cutoff * len(below)), len(below) - 1) if cutoff > 0 else 0
            pick, reason = below[band].model, f"score {score:.3f} < {cutoff:.3f}"
        chosen, cut = _cheaper(config, pick, cheaper_only)
        return Decision(chosen, reason + (", cheaper only" if cut else ""), round(score, 4))


# --- cascade -------------------------------------------------------------------------------------

_REFUSAL = re.compile(
    r"^\W*(?:i'?m sorry|i am sorry|sorry,|i can(?:no|')t (?:help|assist|answer|do)|"
    r"i am (?:not able|unable)|i'?m (?:not able|unable)|as an ai\b)",
    re.IGNORECASE,
)
_UNSURE = re.compile(
    r"\b(?:i'?m not (?:sure|certain)|i don'?t know|i am not (?:sure|certain)|not confident)\b",
    re.IGNORECASE,
)


def schema_check(request: ModelRequest, response: ModelResponse) -> str | None:
    """Fails an answer that does not validate against the request's ``response_schema``."""
    if request.response_schema is None or response.message.tool_calls:
        return None
    try:
        jsonschema.validate(json.loads(response.message.content or ""), request.response_schema)
    except (ValueError, jsonschema.ValidationError) as exc:
        return f"schema: {str(exc).splitlines()[0][:120]}"
    return None


def refusal_check(request: ModelRequest, response: ModelResponse) -> str | None:
    """Fails a refusal ("I'm sorry, I can't...")."""
    return "refusal" if _REFUSAL.search(response.message.content or "") else None


def confidence_check(request: ModelRequest, response: ModelResponse) -> str | None:
    """Fails an empty or cut-off answer, or one that says it is unsure."""
    message = response.message
    if message.tool_calls:
        return None
    if not (message.content or "").strip():
        return "empty answer"
    if response.finish_reason == "length":
        return "answer cut off"
    return "unsure" if _UNSURE.search(message.content or "") else None


DEFAULT_CHECKS: tuple[Check, ...] = (schema_check, refusal_check, confidence_check)


@dataclass(frozen=True, slots=True)
class Cascade:
    """The cheapest candidate first; an answer that fails a check goes to the next dearer
    candidate, up to the strongest (the answer of the last one tried is kept)."""

    checks: tuple[Check, ...] = DEFAULT_CHECKS

    def decide(self, config: RouterConfig, call: RouteInput, cheaper_only: bool) -> Decision:
        strong = config.strong
        chain = [c.model for c in config.candidates if c.unit_cost <= strong.unit_cost]
        if cheaper_only and len(chain) > 1:
            chain = chain[:-1]
        reason = "cascade" + (", cheaper only" if cheaper_only else "")
        return Decision(chain[0], reason, escalate=tuple(chain[1:]), checks=self.checks)


def check_models(config: RouterConfig, strategy: Strategy) -> None:
    """Every model a strategy names is a candidate (``ConfigError`` at start otherwise)."""
    named: list[str] = []
    if isinstance(strategy, Rules):
        named = [r.model for r in strategy.rules] + [m for m in [strategy.default] if m]
    for model in named:
        config.candidate(model)
    if not isinstance(strategy, Rules | Learned | Cascade) and not hasattr(strategy, "decide"):
        raise ConfigError(f"router {config.name}: {strategy!r} is not a routing strategy")
