"""Run hooks: code the invoker runs before and after every agent run, built-in and function
agents alike — the seam for input checks, budget reservation and settlement, memory recall
and extraction (DESIGN.md "One pipeline per run").

The composition root registers them (``App(run_hooks=[...])``). ``before`` runs in order, inside
the run (its events join the run's stream, the run timeout covers it); one that raises fails
the run before the agent starts. ``after`` runs in reverse order for every hook whose
``before`` returned, with the agent's result or the exception it raised; a hook's failure after
a failed run is logged, never hides the run's own error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import structlog

from shipyard.agents.agent import AgentLike
from shipyard.agents.context import RunContext, RunResult

log = structlog.get_logger(__name__)


class RunHook(Protocol):
    async def before(self, ctx: RunContext) -> None:
        """Before the agent runs; ``ctx.request`` says what the run is."""
        ...

    async def after(self, ctx: RunContext, ended: RunResult | BaseException) -> None:
        """After it: its result, or what it raised (a timeout or cancel included)."""
        ...


async def run_hooked(hooks: Sequence[RunHook], target: AgentLike, ctx: RunContext) -> RunResult:
    """``target.run`` between the hooks' ``before`` and ``after``."""
    if not hooks:
        return await target.run(ctx, ctx.request.input)
    entered: list[RunHook] = []
    try:
        for hook in hooks:
            await hook.before(ctx)
            entered.append(hook)
        result = await target.run(ctx, ctx.request.input)
    except BaseException as exc:
        for hook in reversed(entered):
            try:
                await hook.after(ctx, exc)
            except Exception:
                log.exception("a run hook failed after a failed run", run_id=ctx.run_id)
        raise
    for hook in reversed(entered):
        await hook.after(ctx, result)
    return result
