"""The guard policy on a run's input and final answer (the invoker calls these for every run:
invoke, session turn, task, child run).

The input is judged before any hook or the agent sees it: a ``block`` fails the run with 400
``input_blocked``; a rewrite (redact, mask, hash) replaces the input the agent gets. The final
answer is judged before ``run.completed``: rewritten, or replaced by ``BLOCKED_OUTPUT``; the
session history the run adds carries the same text. Memories and documents brought into the
context are judged by whoever brings them, through ``guard_context``. Each decision is an event
of the run; ``audit_blocks`` puts each block in the audit log.
"""

from __future__ import annotations

import dataclasses

from shipyard.agents.context import RunContext, RunInput, RunResult
from shipyard.errors import InputBlocked
from shipyard.guard.pipeline import BLOCKED_OUTPUT, Decision, RunGuard, Verdict
from shipyard.models.base import AssistantMessage, Message, UserMessage
from shipyard.telemetry.audit import AuditEntry, AuditSink
from shipyard.telemetry.events import Event, Sink


def guard_input(ctx: RunContext) -> Verdict | None:
    """The run's input judged (None: no input rules, or nothing to judge). A rewritten input
    replaces ``ctx.request.input`` now, so that ``run.started`` and the records carry it. Of a
    conversation, the last user message is judged (earlier ones had their own turn)."""
    guard = _guard(ctx)
    original = ctx.request.input
    at = None if isinstance(original, str) else _last_user(original)
    if not guard.watches("input") or (not isinstance(original, str) and at is None):
        return None
    text = original if isinstance(original, str) else str(original[at or 0].content)
    judged = guard.check("input", text, ctx.pseudonyms)
    if judged.blocked or judged.text is text:
        return judged
    input: RunInput = judged.text
    if not isinstance(original, str):
        input = [*original[: at or 0], UserMessage(content=judged.text), *original[(at or 0) + 1 :]]
    ctx.request = dataclasses.replace(ctx.request, input=input)
    return judged


def admit_input(ctx: RunContext, judged: Verdict) -> None:
    """The input's decisions as events of the run; ``InputBlocked`` (400) when one blocks."""
    _emit(ctx, judged.decisions)
    if judged.blocked:
        blocking = [d for d in judged.decisions if d.action == "block"]
        raise InputBlocked(
            "the input was blocked by the guard policy",
            details={
                "detectors": sorted({d.detector for d in blocking}),
                "types": sorted({t for d in blocking for t in d.types}),
            },
        )


def guard_output(ctx: RunContext, result: RunResult) -> RunResult:
    """The answer as the policy lets it out, in the result and its last assistant message."""
    guard = _guard(ctx)
    if not guard.watches("output") or not result.output:
        return result
    judged = guard.check("output", result.output)
    _emit(ctx, guard.unreported(result.output, judged.decisions))  # each decision counts once
    text = BLOCKED_OUTPUT if judged.blocked else judged.text
    if text is result.output:
        return result
    messages = tuple(_answer(m, result.output, text) for m in result.messages)
    return dataclasses.replace(result, output=text, messages=messages)


def guard_context(ctx: RunContext, text: str) -> str | None:
    """A memory or document about to enter the model's context (a memory recall, a retrieved
    passage: untrusted text, like a tool result), as the policy's ``context`` rules let it in:
    rewritten, pseudonymized or spotlighted; None when a rule blocks it, so the caller leaves
    it out. Each decision is an event of the run. The seam for memory and retrieval code."""
    guard = ctx.guard
    if guard is None or not guard.watches("context"):
        return text
    judged = guard.check("context", text, ctx.pseudonyms)
    _emit(ctx, judged.decisions)
    return None if judged.blocked else judged.text


def _guard(ctx: RunContext) -> RunGuard:
    assert ctx.guard is not None
    return ctx.guard


def _emit(ctx: RunContext, decisions: tuple[Decision, ...]) -> None:
    for decision in decisions:
        ctx.emit(decision.event_type, **decision.data())


def _last_user(messages: list[Message]) -> int | None:
    for at in range(len(messages) - 1, -1, -1):
        if isinstance(messages[at], UserMessage):
            return at
    return None


def _answer(message: Message, before: str, after: str) -> Message:
    if isinstance(message, AssistantMessage) and message.content == before:
        return message.model_copy(update={"content": after})
    return message


def audit_blocks(audit: AuditSink) -> Sink:
    """An observer that writes each ``guard.block`` decision to the audit log (outcome
    ``blocked``; the detector, surface and entity types as detail, never the text). A block
    on the stream is the answer's only block event (the final answer's check does not repeat
    it), so each is one row."""

    def sink(event: Event) -> None:
        if event.type != "guard.block":
            return
        data = event.data
        audit.record(
            AuditEntry(
                action="guard.block",
                resource=f"run:{event.run_id}",
                outcome="blocked",
                tenant_id=event.tenant_id,
                trace_id=event.trace_id,
                detail={k: data[k] for k in ("guard", "surface", "types", "score") if k in data},
            )
        )

    return sink
