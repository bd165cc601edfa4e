"""The memory tools an agent with ``Memory(tools=True)`` offers its model: ``remember``,
``recall`` and ``forget``, on the run's ``ctx.memory`` (its tenant, agent and subject only)."""

from __future__ import annotations

import json

from shipyard.agents.context import RunContext
from shipyard.agents.memory import RunMemory
from shipyard.agents.tool import Tool, make_tool

NO_MEMORY = "memory is not available in this run (no subject for its scope, or no memory store)"


def _memory(ctx: RunContext) -> RunMemory | None:
    return ctx.memory


async def remember(ctx: RunContext, text: str) -> str:
    """Keep a fact for later conversations (one short, self-contained sentence).

    :param text: The fact to keep, e.g. "The user's favourite tea is sencha".
    """
    memory = _memory(ctx)
    if memory is None:
        return NO_MEMORY
    item = await memory.remember(text)
    return f"remembered as {item.id}"


async def recall(ctx: RunContext, query: str, limit: int = 5) -> str:
    """Search what was remembered earlier, best matches first.

    :param query: What to look for.
    :param limit: At most this many memories (1-20).
    """
    memory = _memory(ctx)
    if memory is None:
        return NO_MEMORY
    hits = await memory.recall(query, max(1, min(limit, 20)))
    return json.dumps([{"id": h.item.id, "text": h.item.text, "score": h.score} for h in hits])


async def forget(ctx: RunContext, memory_id: str) -> str:
    """Delete a memory that is wrong or no longer wanted.

    :param memory_id: The id ``recall`` gave for it.
    """
    memory = _memory(ctx)
    if memory is None:
        return NO_MEMORY
    return "forgotten" if await memory.forget(memory_id) else f"no memory {memory_id!r}"


def memory_tools() -> tuple[Tool, ...]:
    return tuple(make_tool(fn) for fn in (remember, recall, forget))
