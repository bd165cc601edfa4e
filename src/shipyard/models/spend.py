"""The run's spending, as the model wrappers see it: one gate per run, in a ``ContextVar``.

A model wrapper is made once per model and serves every run, so what it needs of the run it
is serving comes from the context: the budget run hook (``runtime.budget``) sets
``current_spend`` to the run's ``SpendGate`` before the agent starts and resets it after.
``BudgetedModel`` (a wrapper the composition root puts right around each provider's model,
so it prices the model that actually answers) asks the gate before each call and tells it
the call's real usage after.

``degraded()`` is the flag a router reads: True once the run passed its reservation under
the ``degrade`` policy — it should then pick only cheaper candidates.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Protocol

from shipyard.models.base import ModelRequest, ModelResponse, StreamItem, Usage
from shipyard.models.wrapper import WrapperModel


class SpendGate(Protocol):
    """A run's budget: asked before each model call, told its usage after."""

    @property
    def degraded(self) -> bool:
        """The run passed its reservation under the ``degrade`` policy."""
        ...

    async def before_call(self, model: str, request: ModelRequest) -> None:
        """Make room for the call's worst case, or apply the policy (``deny`` raises)."""
        ...

    async def after_call(self, model: str, usage: Usage) -> None:
        """Count what the call really cost."""
        ...


current_spend: ContextVar[SpendGate | None] = ContextVar("shipyard_spend", default=None)


def degraded() -> bool:
    """Whether the run being served should only use cheaper models (``degrade`` policy)."""
    gate = current_spend.get()
    return gate is not None and gate.degraded


class BudgetedModel(WrapperModel):
    """Checks each call against the run's budget and settles its real cost (a no-op outside a
    run with a budget)."""

    __slots__ = ()

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        gate = current_spend.get()
        if gate is None:
            async for item in self.wrapped.stream(request):
                yield item
            return
        name = self.wrapped.name
        await gate.before_call(name, request)
        async for item in self.wrapped.stream(request):
            if isinstance(item, ModelResponse):
                await gate.after_call(name, item.usage)
            yield item
