"""Guard policies: which detector runs on which surface of a run, and what its findings do.

A policy is a list of rules. Each rule names a detector (``injection``, ``pii``, ``secrets``,
or one registered in ``guard.registry``), the surfaces it watches (``input``: the run's input;
``tool_result``: every tool result before the model sees it; ``context``: memories and
documents brought into the model's context, through ``runtime.guards.guard_context``;
``output``: every streamed delta and the final answer), an action
(``shipyard.guard.base.Action``) and a score threshold below which a finding is ignored.
``hold_back`` bounds the streamed output held back so that an entity split across deltas is
never emitted (docs/guards.md).

The server-wide default is ``SHIPYARD_GUARDS`` (this model as JSON); an agent's own policy
(``Agent(guards=GuardPolicy(...))``) replaces it for that agent's runs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shipyard.errors import ConfigError
from shipyard.guard.base import Action

Surface = Literal["input", "tool_result", "context", "output"]

TRANSFORMS: frozenset[str] = frozenset({"redact", "mask", "hash", "pseudonymize"})
"""Actions that rewrite the text in place (each finding's span)."""


class GuardRule(BaseModel):
    """One detector on some surfaces with one action."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    detector: str = Field(min_length=1, description="injection, pii, secrets, or a registered one")
    surfaces: tuple[Surface, ...] = Field(min_length=1)
    action: Action
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Findings scoring less are ignored")

    @model_validator(mode="after")
    def _fits(self) -> GuardRule:
        if self.action in ("spotlight", "pseudonymize") and "output" in self.surfaces:
            raise ValueError(
                f"'{self.action}' rewrites text the model reads: not for the output surface"
            )
        return self


class GuardPolicy(BaseModel):
    """The rules for a run, and the streamed output's hold-back window (characters)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: tuple[GuardRule, ...] = ()
    hold_back: int = Field(
        64, ge=1, le=4096, description="Longest entity (characters) a stream hides whole"
    )

    def on(self, surface: Surface) -> tuple[GuardRule, ...]:
        """The rules that watch ``surface``."""
        return tuple(rule for rule in self.rules if surface in rule.surfaces)

    @classmethod
    def from_setting(cls, raw: str, *, setting: str = "SHIPYARD_GUARDS") -> GuardPolicy:
        """The policy written as JSON (``{"rules": [...]}``); empty text: no rules."""
        if not raw.strip():
            return cls()
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            errors = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'policy'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ConfigError(f"{setting}: {errors}") from None


NO_GUARDS = GuardPolicy()
