"""Keeping a session's history within its agent's context budget.

Cuts fall on user messages only, so a turn's tool calls never lose their results. The
dropped part is either forgotten (``truncate``) or replaced by one summary message written by
the agent's model (``summarize``); ``error`` refuses the turn. The full text of every turn stays
in the record store whatever happens here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from shipyard.agents.context import ContextBudget
from shipyard.errors import ContextOverflow
from shipyard.models.base import (
    Message,
    ModelRequest,
    SystemMessage,
    ToolMessage,
    UserMessage,
)

SUMMARY_PREFIX = "Summary of the earlier conversation: "
_SUMMARIZE = (
    "Summarize the conversation below for your own later use: the facts, names, numbers, "
    "decisions and open questions. Be concise; write only the summary."
)


Summarizer = Callable[[ModelRequest], Awaitable[str]]
"""Makes a summary request's model call; its answer text."""


@dataclass(frozen=True, slots=True)
class Compaction:
    """Drop ``dropped`` messages from the front of the stored history; ``summary`` replaces
    them (and any earlier summary) when the policy is ``summarize``."""

    dropped: int
    summary: SystemMessage | None


def estimate_tokens(messages: Sequence[Message]) -> int:
    """About four characters a token, plus a little per message for its framing."""
    total = 0
    for message in messages:
        text = message.content if isinstance(message.content, str) else ""
        calls = getattr(message, "tool_calls", ())
        total += 4 + len(text) // 4 + sum(len(c.arguments) // 4 + 4 for c in calls)
    return total


async def compact(
    budget: ContextBudget,
    summary: SystemMessage | None,
    history: Sequence[Message],
    said: Sequence[Message],
    *,
    summarize: Summarizer,
) -> Compaction | None:
    """What to drop so that ``summary + history + said`` fits, or None if it already does.
    ``summarize`` makes the model call that writes a summary (the session runs it as a run of
    its own, through the invoker)."""
    if estimate_tokens([*([summary] if summary else []), *history, *said]) <= budget.max_tokens:
        return None
    if budget.policy == "error":
        raise ContextOverflow(
            f"the session's history (~{estimate_tokens([*history, *said])} tokens) exceeds the "
            f"agent's context budget of {budget.max_tokens}; start a new session"
        )
    cut = _cut(history, said, budget)
    if budget.policy == "truncate":
        return Compaction(dropped=cut, summary=summary)
    if cut == 0:
        return None
    text = await summarize(summary_request([*([summary] if summary else []), *history[:cut]]))
    return Compaction(dropped=cut, summary=SystemMessage(content=SUMMARY_PREFIX + text))


def _cut(history: Sequence[Message], said: Sequence[Message], budget: ContextBudget) -> int:
    """How many leading messages to drop; always up to (not into) a user message.

    ``truncate``: the fewest for the rest to fit (all of them if nothing fits).
    ``summarize``: everything but the last ``keep_last`` messages (rounded to a turn), since
    the summary stands for what is dropped.
    """
    starts = [i for i, m in enumerate(history) if isinstance(m, UserMessage) and i > 0]
    if budget.policy == "summarize":
        older = [i for i in starts if i <= len(history) - budget.keep_last]
        return older[-1] if older else (starts[0] if starts else len(history))
    for start in starts:
        if estimate_tokens([*history[start:], *said]) <= budget.max_tokens:
            return start
    return len(history)


def summary_request(messages: Sequence[Message]) -> ModelRequest:
    """The model call that summarizes ``messages``."""
    transcript = "\n".join(
        f"{m.role}: {m.content}"
        for m in messages
        if isinstance(m.content, str) and m.content
        if not isinstance(m, ToolMessage) or len(m.content) < 2000
    )
    return ModelRequest(
        messages=(SystemMessage(content=_SUMMARIZE), UserMessage(content=transcript)),
        max_tokens=512,
    )
