"""Session turns under concurrency (each busy policy) and context compaction, on every
state store backend, with real SQLite records."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shipyard import Agent, ContextBudget, SystemMessage, UserMessage
from shipyard.agents.context import RunRequest
from shipyard.errors import ContextOverflow, SessionBusy, StoreError, TurnInterrupted
from shipyard.models.base import AssistantMessage
from shipyard.runtime.compaction import SUMMARY_PREFIX
from shipyard.runtime.invoke import Invoker, RunLimits
from shipyard.runtime.recorder import Recorder
from shipyard.runtime.sessions import SessionService
from shipyard.stores.records.sql import SqlRecordStore
from shipyard.stores.state.base import StateStore
from shipyard.stores.state.redis import RedisStateStore
from shipyard.stores.state.sqlite import SqliteStateStore
from shipyard.testing import ScriptedModel
from tests.servers import free_port
from tests.stores.state.conftest import REDIS_URL

SLOW = ScriptedModel(echo=True, delay_ms=15, name="scripted:slow")


def agents(*extra: Agent) -> dict[str, Agent]:
    found = {a.name: a for a in (Agent(name="slow", model=SLOW), *extra)}
    return found


@pytest.fixture
async def service(store: StateStore, tmp_path: Path) -> AsyncIterator[SessionService]:
    yield await make_service(store, tmp_path, agents())


async def make_service(
    store: StateStore, tmp_path: Path, served: dict[str, Agent]
) -> SessionService:
    records = SqlRecordStore.from_url(f"sqlite:///{tmp_path / 'records.db'}")
    await records.migrate()
    recorder = Recorder(records)
    await recorder.start()
    invoker = Invoker(served, recorder, RunLimits(default_model="scripted:echo"))
    service = SessionService(store, records, invoker, default_ttl_s=60, queue_s=30)
    service._test_close = (recorder, records)  # type: ignore[attr-defined]
    return service


async def close(service: SessionService) -> None:
    recorder, records = service._test_close  # type: ignore[attr-defined]
    await recorder.close()
    await records.close()


async def fifty_turns(service: SessionService, session: str) -> list[object]:
    async def one(n: int) -> object:
        try:
            return await service.turn(RunRequest.turn("t", session, f"m{n}"))
        except SessionBusy as exc:
            return exc

    return await asyncio.gather(*(one(n) for n in range(50)))


def assert_whole_pairs(history: list, expected_inputs: set[str]) -> None:
    """Every turn is a user message followed by its own answer: nothing lost, duplicated or
    interleaved."""
    assert len(history) == 2 * len(expected_inputs)
    said = [m.content for m in history[0::2]]
    answers = [m.content for m in history[1::2]]
    assert all(isinstance(m, UserMessage) for m in history[0::2])
    assert all(isinstance(m, AssistantMessage) for m in history[1::2])
    assert answers == [f"echo: {s}" for s in said]
    assert Counter(said) == Counter(expected_inputs)


async def test_reject_keeps_one_turn_at_a_time(service: SessionService) -> None:
    try:
        session = (await service.create("t", "slow", metadata={}, ttl_s=None)).id
        results = await fifty_turns(service, session)
        won = {r.output.removeprefix("echo: ") for r in results if not isinstance(r, Exception)}
        refused = [r for r in results if isinstance(r, SessionBusy)]
        assert won and refused and len(won) + len(refused) == 50
        assert all(r.code == "session_busy" for r in refused)
        view = await service.get("t", session)
        assert_whole_pairs(view.history, won)
        assert view.turns == len(won)
    finally:
        await close(service)


async def test_enqueue_runs_every_turn_in_turn(service: SessionService) -> None:
    try:
        session = (await service.create("t", "slow", metadata={}, ttl_s=None, on_busy="enqueue")).id
        results = await fifty_turns(service, session)
        assert not [r for r in results if isinstance(r, Exception)]
        view = await service.get("t", session)
        assert_whole_pairs(view.history, {f"m{n}" for n in range(50)})
        assert view.turns == 50
    finally:
        await close(service)


def replica_of(store: StateStore, tmp_path: Path) -> StateStore:
    """A second connection to the same state, as another replica (another process) has: on
    SQLite another store on the fixture's file, whose channels do not reach this one's."""
    if isinstance(store, RedisStateStore):
        return RedisStateStore.from_url(REDIS_URL, prefix=store.prefix)
    assert isinstance(store, SqliteStateStore)
    return SqliteStateStore.from_url(f"sqlite:///{tmp_path}/state.db")


@pytest.mark.parametrize("replicas", [1, 2])
async def test_enqueued_turns_run_in_the_order_they_arrived(
    store: StateStore, tmp_path: Path, replicas: int
) -> None:
    """Five turns 0.3 s apart on an agent that takes a second: four of them wait together,
    and the history keeps their arrival order — with the turns alternating between two
    replicas too."""
    slowest = ScriptedModel(echo=True, delay_ms=1000, name="scripted:slowest")
    first = await make_service(store, tmp_path, agents(Agent(name="slowest", model=slowest)))
    _, records = first._test_close  # type: ignore[attr-defined]
    other = replica_of(store, tmp_path) if replicas == 2 else store
    second = SessionService(other, records, first._invoker, default_ttl_s=60, queue_s=30)
    try:
        session = (
            await first.create("t", "slowest", metadata={}, ttl_s=None, on_busy="enqueue")
        ).id
        turns = []
        for n in range(5):
            service = (first, second)[n % 2] if replicas == 2 else first
            turns.append(asyncio.create_task(service.turn(RunRequest.turn("t", session, f"t{n}"))))
            await asyncio.sleep(0.3)
        await asyncio.gather(*turns)
        history = (await first.get("t", session)).history
        assert [m.content for m in history[0::2]] == [f"t{n}" for n in range(5)]
    finally:
        await close(first)
        if other is not store:
            await other.close()


async def test_a_queued_turn_that_gives_up_leaves_the_line(
    store: StateStore, tmp_path: Path
) -> None:
    """One waiter reaches the queue bound, one is cancelled (its client left): both give their
    tickets back at once (taken 1 and 2 on a new session), and the turn behind them runs."""
    slowest = ScriptedModel(echo=True, delay_ms=1000, name="scripted:slowest")
    first = await make_service(store, tmp_path, agents(Agent(name="slowest", model=slowest)))
    _, records = first._test_close  # type: ignore[attr-defined]
    impatient = SessionService(store, records, first._invoker, default_ttl_s=60, queue_s=0.3)
    try:
        session = (
            await first.create("t", "slowest", metadata={}, ttl_s=None, on_busy="enqueue")
        ).id
        running = asyncio.create_task(first.turn(RunRequest.turn("t", session, "t0")))
        await asyncio.sleep(0.2)
        with pytest.raises(SessionBusy, match=r"waited 0\.3s"):
            await impatient.turn(RunRequest.turn("t", session, "t1"))
        cancelled = asyncio.create_task(first.turn(RunRequest.turn("t", session, "t2")))
        await asyncio.sleep(0.2)
        last = asyncio.create_task(first.turn(RunRequest.turn("t", session, "t3")))
        await asyncio.sleep(0.2)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        turn_lease = f"ses:{{{session}}}:turn"
        # the tickets handed out before this probe's: only the last waiter's is still in line
        # (whatever order a loaded machine handed them out in; taking it out does no harm, its
        # waiter puts it back at its next ask)
        probe = await store.join_queue(turn_lease, ticket_ttl_s=1)
        await store.leave_queue(turn_lease, probe)
        still = [t for t in range(1, probe) if await store.leave_queue(turn_lease, t)]
        assert len(still) == 1, still
        await asyncio.gather(running, last)
        history = (await first.get("t", session)).history
        assert [m.content for m in history[0::2]] == ["t0", "t3"]
    finally:
        await close(first)


async def test_a_waiter_cancelled_while_its_ask_is_on_the_wire_stays_out_of_line(
    store: StateStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancel that lands after the waiter's ask was sent but before the store answered: the
    store still carries the ask out (it refreshes the waiter's ticket), so the waiter waits for
    that answer before it leaves the line; leaving first would let the late ask put it back."""
    slowest = ScriptedModel(echo=True, delay_ms=1000, name="scripted:slowest")
    first = await make_service(store, tmp_path, agents(Agent(name="slowest", model=slowest)))
    try:
        session = (
            await first.create("t", "slowest", metadata={}, ttl_s=None, on_busy="enqueue")
        ).id
        running = asyncio.create_task(first.turn(RunRequest.turn("t", session, "t0")))
        await asyncio.sleep(0.2)
        real, sent, wire = store.acquire_lease_in_turn, asyncio.Event(), []

        async def on_the_wire(*args: object, **kwargs: object) -> object:
            async def arrives() -> object:
                await asyncio.sleep(0.1)  # the command is sent; the store gets it a bit later
                return await real(*args, **kwargs)  # type: ignore[arg-type]

            wire.append(landing := asyncio.ensure_future(arrives()))
            sent.set()
            return await asyncio.shield(landing)  # a cancel here does not unsend it

        monkeypatch.setattr(store, "acquire_lease_in_turn", on_the_wire)
        waiter = asyncio.create_task(first.turn(RunRequest.turn("t", session, "t1")))
        await sent.wait()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await asyncio.gather(*wire)
        assert not await store.leave_queue(f"ses:{{{session}}}:turn", 1)  # left, and stayed out
        await running
    finally:
        await close(first)


async def test_a_turn_longer_than_its_lease_keeps_it(store: StateStore, tmp_path: Path) -> None:
    """The lease is renewed while the turn runs: a turn five lease lifetimes long is still the
    session's only turn at its end (another is refused), and its answer is kept."""
    long = Agent(name="long", model=ScriptedModel(echo=True, delay_ms=1000, name="scripted:1s"))
    service = await make_service(store, tmp_path, agents(long))
    service._lease_s = 0.2
    try:
        session = (await service.create("t", "long", metadata={}, ttl_s=None)).id
        running = asyncio.create_task(service.turn(RunRequest.turn("t", session, "first")))
        for _ in range(3):
            await asyncio.sleep(0.25)
            with pytest.raises(SessionBusy):
                await service.turn(RunRequest.turn("t", session, "second"))
        assert (await running).output == "echo: first"
        assert (await service.get("t", session)).turns == 1
    finally:
        await close(service)


async def test_interrupt_cancels_the_running_turn(service: SessionService) -> None:
    try:
        session = (
            await service.create("t", "slow", metadata={}, ttl_s=None, on_busy="interrupt")
        ).id
        results = await fifty_turns(service, session)
        won = {r.output.removeprefix("echo: ") for r in results if not isinstance(r, Exception)}
        interrupted = [r for r in results if isinstance(r, TurnInterrupted)]
        assert won and interrupted
        assert len(won) + len([r for r in results if isinstance(r, SessionBusy)]) == 50
        view = await service.get("t", session)
        assert_whole_pairs(view.history, won)
        _, records = service._test_close  # type: ignore[attr-defined]
        runs = (await records.list_runs("t", session_id=session, limit=500)).items
        cancelled = [r for r in runs if r.error and r.error["code"] == "cancelled"]
        assert len(cancelled) == len(interrupted)
        assert {r.error["message"] for r in cancelled} == {"interrupted by a newer turn"}
    finally:
        await close(service)


async def test_truncate_drops_the_oldest_turns_from_the_model_only(
    store: StateStore, tmp_path: Path
) -> None:
    model = ScriptedModel(echo=True)
    budget = ContextBudget(max_tokens=40, policy="truncate")
    service = await make_service(
        store, tmp_path, agents(Agent(name="short", model=model, context_budget=budget))
    )
    try:
        session = (await service.create("t", "short", metadata={}, ttl_s=None)).id
        for n in range(8):
            await service.turn(RunRequest.turn("t", session, f"message number {n} " + "x" * 40))
        last = model.requests[-1].messages
        assert len(last) < 16 and last[-1].content.startswith("message number 7")
        assert isinstance(last[0], UserMessage)  # cut on a turn boundary
        assert len((await service.get("t", session)).history) == 16  # stored history is whole
    finally:
        await close(service)


async def test_summarize_replaces_old_turns_with_a_summary(
    store: StateStore, tmp_path: Path
) -> None:
    model = ScriptedModel(echo=True)
    budget = ContextBudget(max_tokens=60, policy="summarize", keep_last=2)
    service = await make_service(
        store, tmp_path, agents(Agent(name="sum", model=model, context_budget=budget))
    )
    try:
        session = (await service.create("t", "sum", metadata={}, ttl_s=None)).id
        for n in range(6):
            await service.turn(RunRequest.turn("t", session, f"fact {n}: " + "y" * 60))
        last = model.requests[-1].messages
        assert isinstance(last[0], SystemMessage) and last[0].content.startswith(SUMMARY_PREFIX)
        assert last[-1].content.startswith("fact 5")
        assert not any(m.content.startswith("fact 0") for m in last[1:])
    finally:
        await close(service)


async def test_error_policy_refuses_an_overflowing_turn(store: StateStore, tmp_path: Path) -> None:
    budget = ContextBudget(max_tokens=30, policy="error")
    service = await make_service(
        store, tmp_path, agents(Agent(name="strict", model="scripted:echo", context_budget=budget))
    )
    try:
        session = (await service.create("t", "strict", metadata={}, ttl_s=None)).id
        await service.turn(RunRequest.turn("t", session, "short"))
        with pytest.raises(ContextOverflow):
            await service.turn(RunRequest.turn("t", session, "z" * 400))
        assert len((await service.get("t", session)).history) == 2
    finally:
        await close(service)


async def test_a_session_the_state_store_cannot_keep_is_not_listed(tmp_path: Path) -> None:
    """Redis down (a real Redis URL on a port nobody listens on): creation fails, and leaves no
    session row behind."""
    down = RedisStateStore.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout_s=0.5)
    service = await make_service(down, tmp_path, agents())
    try:
        with pytest.raises(StoreError):
            await service.create("t", "slow", metadata={}, ttl_s=None)
        page = await service.listing("t", agent=None, limit=50, cursor=None)
        assert page.items == []
    finally:
        await close(service)
        await down.close()
