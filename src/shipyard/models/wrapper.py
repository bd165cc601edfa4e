"""``WrapperModel``: a ``ChatModel`` around another, the seam for cross-cutting concerns.

Instrumentation, routing, caching, budgets, guards and secret resolution each subclass it and
override ``stream`` (and ``name`` if they change which model answers), calling the wrapped
model's ``stream`` — never a flag on a provider. The composition root hands a list of
wrappers to the ``ModelResolver``, which composes them around every model it resolves::

    class Counting(WrapperModel):
        async def stream(self, request):
            calls.append(request)
            async for item in self.wrapped.stream(request):
                yield item

    App(agents=[...], model_wrappers=[Counting])
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from shipyard.models.base import ChatModel, ModelRequest, StreamItem


class WrapperModel:
    """Delegates everything to ``wrapped``; subclasses override what they add to."""

    __slots__ = ("wrapped",)

    def __init__(self, wrapped: ChatModel) -> None:
        self.wrapped = wrapped

    @property
    def name(self) -> str:
        return self.wrapped.name

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        return self.wrapped.stream(request)
