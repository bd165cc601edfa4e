"""An agent's own events (``ctx.emit`` with a custom type): recorded and read back in order; a
type or data the schema refuses raises in the agent's code and leaves no gap in ``seq``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shipyard import App, RunContext, agent
from shipyard.agents.context import RunRequest
from shipyard.app import build_services
from shipyard.config import load_settings
from shipyard.errors import InvalidEvent, RunFailure
from shipyard.runtime.services import Services


@agent("progress")
async def progress(ctx: RunContext, input: object) -> str:
    ctx.emit("app.progress", done=1, of=2)
    ctx.emit("acme.search.hit", url="https://example.com", score=0.5)
    return "done"


@agent("careful")
async def careful(ctx: RunContext, input: object) -> str:
    """Tries what the schema refuses, catches each refusal, and carries on."""
    refusals = []
    for type_, data in [
        ("progress", {}),  # not namespaced
        ("App.Progress", {}),  # not lower-case
        ("run.progress", {}),  # Shipyard's own namespace
        ("tool.custom", {}),
        ("app.progress", {"when": object()}),  # not JSON
    ]:
        try:
            ctx.emit(type_, **data)
        except ValueError as exc:
            assert isinstance(exc, InvalidEvent)
            refusals.append(str(exc))
    ctx.emit("app.progress", refused=len(refusals))
    return "\n".join(refusals)


@agent("careless")
async def careless(ctx: RunContext, input: object) -> str:
    ctx.emit("app.step", n=1)
    ctx.emit("progress", n=2)
    return "never"


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    built = build_services(
        App(agents=[progress, careful, careless]), load_settings(home=tmp_path, record_wait_s=5)
    )
    await built.records.migrate()
    await built.start()
    try:
        yield built
    finally:
        await built.close()


async def events_of(services: Services, run_id: str) -> list[tuple[int, str, dict[str, object]]]:
    await services.recorder.durable()
    return [(e.seq, e.type, e.data) for e in await services.records.list_events("t", run_id)]


async def test_custom_events_are_recorded_in_order(services: Services) -> None:
    outcome = await services.invoker.invoke(RunRequest(tenant_id="t", agent="progress", input="go"))
    events = await events_of(services, outcome.run_id)
    assert [seq for seq, _, _ in events] == [1, 2, 3, 4]
    assert [(t, d) for _, t, d in events[1:3]] == [
        ("app.progress", {"done": 1, "of": 2}),
        ("acme.search.hit", {"url": "https://example.com", "score": 0.5}),
    ]


async def test_a_refused_emit_raises_in_the_agent_and_takes_no_seq(services: Services) -> None:
    outcome = await services.invoker.invoke(RunRequest(tenant_id="t", agent="careful", input="go"))
    refusals = outcome.output.split("\n")
    assert len(refusals) == 5
    assert "must be namespaced" in refusals[0] and "'app.progress'" in refusals[0]
    assert "must be namespaced" in refusals[1]
    assert "Shipyard's own" in refusals[2] and "Shipyard's own" in refusals[3]
    assert "does not serialise to JSON" in refusals[4]
    events = await events_of(services, outcome.run_id)
    assert [seq for seq, _, _ in events] == [1, 2, 3]
    assert [t for _, t, _ in events] == ["run.started", "app.progress", "run.completed"]


async def test_an_uncaught_refusal_fails_the_run_saying_why_with_no_gap(
    services: Services,
) -> None:
    with pytest.raises(RunFailure, match="custom event type 'progress' must be namespaced"):
        await services.invoker.invoke(RunRequest(tenant_id="t", agent="careless", input="go"))
    run = (await services.records.list_runs("t", agent="careless")).items[0]
    events = await events_of(services, run.id)
    assert [(seq, t) for seq, t, _ in events] == [
        (1, "run.started"),
        (2, "app.step"),
        (3, "run.failed"),
    ]
