"""Stateful sessions: a conversation whose history lives in the state store, one turn at a time.

Keys per session (one hash tag, so Redis Cluster keeps them on one node)::

    ses:{id}:meta      tenant, agent, TTL, busy policy, committed turns (the version), and
                       where the model's context starts in the history with its summary (JSON)
    ses:{id}:history   the conversation, one JSON message per item, append-only
    ses:{id}:turn      the lease of the turn in progress, and the queue of turns waiting for it
    ses:{id}:control   control target: "interrupt" tells the running turn to stop, "next" wakes
                       the queued turns when the lease is given up

A turn:
1. takes the turn lease; if another turn holds it (or turns wait in line for it), the session's
   ``on_busy`` policy decides: ``reject`` (409 ``session_busy``), ``enqueue`` (take a ticket in
   the lease's queue and wait, up to the queue bound: queued turns run in the order they
   arrived, whichever replica they arrived at), or ``interrupt`` (tell it to stop — it is
   recorded as cancelled — then wait);
2. loads the history; if it outgrows the agent's context budget, compacts it;
3. runs the agent on it plus the new input, as a recorded run;
4. appends the input and everything the run added in one ``append_if`` guarded by the meta
   (which carries the version), so a failed or interrupted turn leaves no half-written history;
   the same call writes the new meta and renews both TTLs (sliding expiry);
5. releases the lease.
The records keep a row per session and every turn as a run: when the live state expires the
transcript is still there, and the session answers 404 ``session_expired``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, TypeAdapter

from shipyard.agents.agent import FunctionAgent
from shipyard.agents.context import RunContext, RunInput, RunRequest
from shipyard.errors import (
    SessionBusy,
    SessionExpired,
    SessionNotFound,
    StoreError,
    TurnInterrupted,
)
from shipyard.models.base import Message, ModelRequest, SystemMessage, UserMessage, complete
from shipyard.runtime.compaction import Summarizer, compact
from shipyard.runtime.control import Control
from shipyard.runtime.invoke import Invoker, RunOutcome
from shipyard.stores.records.base import Page, RecordStore, SessionRecord
from shipyard.stores.state.base import Lease, StateStore
from shipyard.telemetry.events import Sink, new_id

BusyPolicy = Literal["reject", "enqueue", "interrupt"]
T = TypeVar("T")

_MESSAGE: TypeAdapter[Message] = TypeAdapter(Message)
_MESSAGES: TypeAdapter[list[Message]] = TypeAdapter(list[Message])


def _as_judged(said: list[Message], outcome: RunOutcome) -> list[Message]:
    """The turn's messages as the guard let them in (redacted, pseudonymized): what the
    history keeps, so that later turns never send the model what the guard took out."""
    judged = outcome.input
    if not isinstance(judged, list) or len(judged) < len(said):
        return said
    return judged[len(judged) - len(said) :]


def _decode(items: list[bytes]) -> list[Message]:
    """A stored history in one parse (one call into pydantic-core, not one per message)."""
    return _MESSAGES.validate_json(b"[" + b",".join(items) + b"]")


LEASE_S = 15.0
"""A turn's lease lives this long and is renewed every third of it while the turn runs, so the
lease of a replica that died mid-turn frees its session within this time."""
INTERRUPT = b"interrupt"
NEXT = b"next"
TICKET_TTL_S = 5.0
"""A queued turn's place in line lives this long unless its waiter refreshes it (every
``POLL_S``), so a waiter that died holds the line up for this long at most."""
POLL_S = 0.2
"""A queued turn asks again this often even when nobody wakes it (a wake-up is lost, or comes
from another process of an embedded setup, whose channels do not cross processes)."""


class _Meta(BaseModel):
    tenant_id: str
    agent: str
    ttl_s: float
    on_busy: BusyPolicy = "reject"
    turns: int = 0
    start: int = 0  # the first history item the model sees (after compaction)
    summary: SystemMessage | None = None  # stands for the items before ``start``

    def encode(self) -> bytes:
        return self.model_dump_json(exclude_defaults=True).encode()


@dataclass(frozen=True, slots=True)
class SessionView:
    record: SessionRecord
    on_busy: BusyPolicy
    history: list[Message]
    turns: int


class _Keys:
    def __init__(self, session_id: str) -> None:
        base = f"ses:{{{session_id}}}"
        self.meta, self.history = f"{base}:meta", f"{base}:history"
        self.turn, self.control = f"{base}:turn", f"{base}:control"


def history_keys(session_id: str) -> tuple[str, str]:
    """The state keys holding a session's conversation: its meta (with the compaction summary)
    and its history; what erasing or pruning a session deletes from the state store."""
    keys = _Keys(session_id)
    return keys.meta, keys.history


class SessionService:
    def __init__(
        self,
        state: StateStore,
        records: RecordStore,
        invoker: Invoker,
        *,
        default_ttl_s: float,
        queue_s: float = 30.0,
        control: Control | None = None,
        max_ttl_s: Callable[[str], Awaitable[float | None]] | None = None,
    ) -> None:
        """``control``: the process's control channel (one is made for this service alone if
        not given). ``max_ttl_s``: a tenant's longest session TTL, if any (its retention's
        ``sessions_days``): a longer ``ttl_s`` is cut to it."""
        self._state = state
        self._control = control or Control(state)
        self._records = records
        self._invoker = invoker
        self._default_ttl_s = default_ttl_s
        self._max_ttl_s = max_ttl_s
        self._lease_s = LEASE_S
        self._queue_s = queue_s
        self.active_turns = 0
        """Turns running in this process (holding their session's lease): the active sessions
        metric. One turn per session at a time, so the sum over processes counts sessions."""

    async def create(
        self,
        tenant_id: str,
        agent: str,
        *,
        metadata: dict[str, Any],
        ttl_s: float | None,
        on_busy: BusyPolicy = "reject",
    ) -> SessionRecord:
        target = self._invoker.agent(agent)  # 404 for an unknown agent, before anything is kept
        ttl_s = ttl_s or self._default_ttl_s
        cap = await self._max_ttl_s(tenant_id) if self._max_ttl_s is not None else None
        record = SessionRecord(
            id=new_id("ses"),
            tenant_id=tenant_id,
            agent=target.name,
            metadata=metadata,
            ttl_s=min(ttl_s, cap) if cap is not None else ttl_s,
            created_at=datetime.now(UTC),
        )
        # The live state first: a state store that is down fails the creation before the
        # records keep a row for it (which the list would show). If the records fail, the state
        # is taken back; what a failed take-back leaves is unreachable (its id was never given
        # out) and expires with its TTL.
        keys = _Keys(record.id)
        meta = _Meta(tenant_id=tenant_id, agent=target.name, ttl_s=record.ttl_s, on_busy=on_busy)
        await self._state.set(keys.meta, meta.encode(), ttl_s=record.ttl_s)
        try:
            await self._records.add_session(record)
        except BaseException:
            with contextlib.suppress(StoreError):
                await self._state.delete(keys.meta)
            raise
        return record

    async def get(self, tenant_id: str, session_id: str) -> SessionView:
        """The session and its whole stored history (compaction only trims what the model sees)."""
        record = await self._record(tenant_id, session_id)
        keys = _Keys(session_id)
        meta, _ = await self._live(tenant_id, session_id, keys)
        history = _decode(await self._state.range(keys.history))
        return SessionView(record, meta.on_busy, history, meta.turns)

    async def listing(
        self, tenant_id: str, *, agent: str | None, limit: int, cursor: str | None
    ) -> Page[SessionRecord]:
        return await self._records.list_sessions(tenant_id, agent=agent, limit=limit, cursor=cursor)

    async def delete(self, tenant_id: str, session_id: str) -> None:
        await self._record(tenant_id, session_id)
        keys = _Keys(session_id)
        await self._records.delete_session(tenant_id, session_id)
        await self._state.delete(keys.meta, keys.history)

    async def check(self, tenant_id: str, session_id: str) -> None:
        """Raise what a turn would raise for a missing, deleted or expired session."""
        await self._live(tenant_id, session_id, _Keys(session_id))

    async def turn(
        self,
        request: RunRequest,
        *,
        sinks: Sequence[Sink] = (),
        stream_deltas: bool = False,
    ) -> RunOutcome:
        """Run ``request`` (``RunRequest.turn(...)``: its ``session_id`` names the session,
        whose agent runs it) as the session's next turn."""
        if request.session_id is None:
            raise ValueError("a session turn's request names its session")
        tenant_id, session_id, input = request.tenant_id, request.session_id, request.input
        keys = _Keys(session_id)
        run_id = request.run_id
        lease = await self._state.acquire_lease(keys.turn, run_id, ttl_s=self._lease_s)
        if lease is None:  # busy: the session's policy decides (and a 404 comes first)
            meta, _ = await self._live(tenant_id, session_id, keys)
            lease = await self._wait_for_turn(keys, meta, run_id)
        keeper = _Keeper(self._keep, lease, self._lease_s / 3)
        self.active_turns += 1
        policy: BusyPolicy = "reject"
        try:
            meta, raw = await self._live(tenant_id, session_id, keys)  # as of holding the lease
            policy = meta.on_busy
            said: list[Message] = (
                [UserMessage(content=input)] if isinstance(input, str) else list(input)
            )
            meta, context = await self._context(keys, meta, said, request)

            async def run(extra: Sequence[Sink] = ()) -> RunOutcome:
                return await self._invoker.invoke(
                    replace(request, agent=meta.agent, input=[*context, *said]),
                    sinks=[*sinks, *extra],
                    stream_deltas=stream_deltas,
                )

            if meta.on_busy == "interrupt":
                async with self._control.stopper(keys.control, INTERRUPT) as stopper:
                    outcome = await stopper.run(
                        run,
                        stopped=lambda: TurnInterrupted(
                            "a newer turn of this session interrupted it"
                        ),
                        reason="interrupted by a newer turn",
                    )
            else:
                outcome = await run()
            await self._commit(keys, raw, meta, [*_as_judged(said, outcome), *outcome.messages])
            return outcome
        finally:
            self.active_turns -= 1
            await keeper.stop()
            await self._state.release_lease(lease)
            if policy == "enqueue":  # the next turn in line need not wait for its next poll
                await self._wake(keys)

    # -- one turn at a time ---------------------------------------------------------------------

    async def _keep(self, lease: Lease) -> None:
        """Renew the turn's lease (now, then every third of its life) while it runs; a lost
        lease is caught by the commit's guard."""
        while True:
            try:
                renewed = await self._state.renew_lease(lease, ttl_s=self._lease_s)
            except StoreError:
                renewed = lease  # the store may come back before the lease runs out
            if renewed is None:
                return
            lease = renewed
            await asyncio.sleep(self._lease_s / 3)

    async def _wait_for_turn(self, keys: _Keys, meta: _Meta, owner: str) -> Lease:
        if meta.on_busy == "reject":
            raise SessionBusy("this session is running another turn; try again")
        if meta.on_busy == "enqueue":
            return await self._queue(keys, owner)
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + self._queue_s, 0.005
        while loop.time() < deadline:
            # again each time: the holder may not listen yet
            await self._control.send(keys.control, INTERRUPT)
            await asyncio.sleep(delay * (0.5 + random.random()))
            lease = await self._state.acquire_lease(keys.turn, owner, ttl_s=self._lease_s)
            if lease is not None:
                return lease
            delay = min(delay * 2, 0.05)
        raise self._waited_too_long()

    async def _queue(self, keys: _Keys, owner: str) -> Lease:
        """Wait in the lease's queue, first come first served, woken by "next" (and asking
        again every ``POLL_S`` regardless); a waiter that gives up — the queue bound, or its
        caller gone — leaves the line and wakes the others."""
        await self._control.listening()
        woken = asyncio.Event()

        def hear(word: bytes) -> None:
            if word == NEXT:
                woken.set()

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._queue_s
        with self._control.watch(keys.control, hear):
            ticket = await _finished_on_cancel(
                self._state.join_queue(keys.turn, ticket_ttl_s=TICKET_TTL_S),
                lambda ticket: self._state.leave_queue(keys.turn, ticket),
            )
            try:
                while True:
                    woken.clear()
                    lease = await self._ask_in_turn(keys, owner, ticket)
                    if lease is not None:
                        return lease
                    left = deadline - loop.time()
                    if left <= 0:
                        raise self._waited_too_long()
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                    # cancel that lands as the wait ends, and a waiter whose caller left would
                    # then go on to run its turn (seen as a flaky test)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(min(POLL_S, left)):
                            await woken.wait()
            except BaseException:
                with contextlib.suppress(StoreError):
                    await self._state.leave_queue(keys.turn, ticket)
                    await self._wake(keys)
                raise

    async def _ask_in_turn(self, keys: _Keys, owner: str, ticket: int) -> Lease | None:
        """One ask, finished even when the waiter is cancelled meanwhile (``_finished_on_cancel``):
        a lease it took is given back before the cancel goes on."""

        async def give_back(took: Lease | None) -> None:
            if took is not None:
                await self._state.release_lease(took)

        return await _finished_on_cancel(
            self._state.acquire_lease_in_turn(
                keys.turn, owner, ticket, ttl_s=self._lease_s, ticket_ttl_s=TICKET_TTL_S
            ),
            give_back,
        )

    async def _wake(self, keys: _Keys) -> None:
        with contextlib.suppress(StoreError):  # they ask again within POLL_S anyway
            await self._control.send(keys.control, NEXT)

    def _waited_too_long(self) -> SessionBusy:
        return SessionBusy(f"waited {self._queue_s:g}s for this session's running turn; try again")

    # -- history --------------------------------------------------------------------------------

    async def _context(
        self, keys: _Keys, meta: _Meta, said: list[Message], request: RunRequest
    ) -> tuple[_Meta, list[Message]]:
        """The history the model sees: from the context start, after its summary, compacted to
        the agent's budget if it outgrew it (the new start is committed with the turn)."""
        history = _decode(await self._state.range(keys.history, meta.start))
        budget = self._invoker.agent(meta.agent).context_budget
        if budget is not None:
            summarize = self._summarizer(meta.agent, request)
            change = await compact(budget, meta.summary, history, said, summarize=summarize)
            if change is not None:
                update = {"start": meta.start + change.dropped, "summary": change.summary}
                meta = meta.model_copy(update=update)
                history = history[change.dropped :]
        return meta, [*([meta.summary] if meta.summary else []), *history]

    def _summarizer(self, agent: str, turn: RunRequest) -> Summarizer:
        """Compaction's model call as a run of its own: the agent's model through the same
        pipeline as any run (wrappers, hooks, processors, records, traces), a child of the turn
        (``parent_run_id`` is the turn's run, which starts after it)."""
        model = self._invoker.model_for(agent)

        async def summarize(call: ModelRequest) -> str:
            async def write(ctx: RunContext, input: RunInput) -> str:
                response = await complete(ctx.model(model), call)
                return (response.message.content or "").strip()

            child = replace(
                turn,
                agent=agent,
                input=list(call.messages),
                run_id=new_id("run"),
                session_id=None,
                task_id=None,
                parent_run_id=turn.run_id,
                metadata={"compaction_of": turn.session_id},
            )
            outcome = await self._invoker.invoke_with(FunctionAgent(agent, write), child)
            return outcome.output

        return summarize

    async def _commit(
        self, keys: _Keys, raw: bytes, meta: _Meta, messages: Sequence[Message]
    ) -> None:
        items = [_MESSAGE.dump_json(m, exclude_none=True) for m in messages]
        new = meta.model_copy(update={"turns": meta.turns + 1}).encode()
        written = await self._state.append_if(
            keys.history, items, guard_key=keys.meta, expected=raw, new=new, ttl_s=meta.ttl_s
        )
        if not written:  # deleted meanwhile, or our lease ran out and another turn committed
            raise SessionBusy("the session changed during this turn; its answer was not kept")

    async def _live(self, tenant_id: str, session_id: str, keys: _Keys) -> tuple[_Meta, bytes]:
        raw = await self._state.get(keys.meta)
        if raw is None:
            record = await self._record(tenant_id, session_id)
            raise SessionExpired(
                f"session {record.id} expired after {record.ttl_s:g}s idle; "
                "its turns remain in GET /v1/runs?session_id=..."
            )
        meta = _Meta.model_validate_json(raw)
        if meta.tenant_id != tenant_id:
            raise SessionNotFound(f"no session {session_id!r}")
        return meta, raw

    async def _record(self, tenant_id: str, session_id: str) -> SessionRecord:
        record = await self._records.get_session(tenant_id, session_id)
        if record is None or record.deleted_at is not None:
            raise SessionNotFound(f"no session {session_id!r}")
        return record


class _Keeper:
    """Keeps a turn's lease: a timer that starts ``keep`` (a task renewing the lease) once the
    turn has run for ``after_s``. Most turns end well before: they cost a timer, not a task
    started, cancelled and awaited."""

    def __init__(
        self, keep: Callable[[Lease], Coroutine[Any, Any, None]], lease: Lease, after_s: float
    ) -> None:
        self._keep, self._lease = keep, lease
        self._task: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(after_s, self._start)

    def _start(self) -> None:
        self._task = asyncio.create_task(self._keep(self._lease))

    async def stop(self) -> None:
        self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def _finished_on_cancel(
    call: Coroutine[Any, Any, T], undo: Callable[[T], Awaitable[Any]]
) -> T:
    """Await a state-store call that is finished even when the caller is cancelled meanwhile:
    a command cut off mid-reply leaves the client's connection unfit for its next user (redis-py
    #2665), and its effect (a ticket taken or refreshed, a lease taken) would land after the
    waiter left the line. On a cancel the call is awaited, ``undo`` given its result, then the
    cancel goes on."""
    call_ = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(call_)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await undo(await call_)
        raise
