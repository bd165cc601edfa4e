"""The pages' content, in process on a real SQLite record store: a run's timeline, a trace's
waterfall, the overview's numbers, the tasks' cancel and retry, the audit log's chains."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI

import shipyard
from shipyard import Agent, RunContext, RunInput, call_agent, tool
from shipyard.agents.context import RunRequest
from shipyard.api.ui.stats import overview, percentile
from shipyard.api.ui.timeline import steps_of
from shipyard.app import App
from shipyard.config import load_settings
from shipyard.runtime.services import Services
from shipyard.telemetry.events import Event
from shipyard.testing import ScriptedModel
from tests.ui.conftest import ADMIN, browser, csrf_of, error_code, sign_in


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@shipyard.agent("boss")
async def boss(ctx: RunContext, input: RunInput) -> str:
    """Asks the echo agent, in process: a child run."""
    return await call_agent("echo", f"research {input}")


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = load_settings(home=tmp_path, admin_key=ADMIN, log_events=False, metrics=False)
    calc = Agent(
        name="calc",
        model=ScriptedModel(
            [{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "It is 5."]
        ),
        tools=[add],
    )
    agents = [Agent(name="echo", model="scripted:echo"), calc, boss]
    asgi = App(agents=agents).asgi(settings)
    async with asgi.router.lifespan_context(asgi):
        yield asgi


def services(app: FastAPI) -> Services:
    found: Services = app.state.services
    return found


async def test_a_runs_timeline_shows_each_model_and_tool_call(app: FastAPI) -> None:
    outcome = await services(app).invoker.invoke(
        RunRequest(tenant_id="default", agent="calc", input="2+3?")
    )
    async with browser(app) as client:
        await sign_in(client, ADMIN)
        page = (await client.get(f"/ui/runs/{outcome.run_id}")).text
    kinds = re.findall(r'data-kind="(\w+)"', page)
    assert kinds == ["run", "model", "tool", "model", "end"]
    assert "tool · add" in page and "&#34;a&#34;: 2" in page  # the arguments, escaped
    assert "It is 5." in page and "model call · " in page
    assert re.search(r"\d+ in / \d+ out tokens", page)


async def test_a_trace_page_draws_the_runs_spans(app: FastAPI) -> None:
    outcome = await services(app).invoker.invoke(
        RunRequest(tenant_id="default", agent="calc", input="2+3?")
    )
    run = await services(app).records.get_run("default", outcome.run_id)
    assert run is not None and run.trace_id
    async with browser(app) as client:
        await sign_in(client, ADMIN)
        page = await client.get(f"/ui/traces/{run.trace_id}")
        missing = await client.get(f"/ui/traces/{'ab' * 16}")
        malformed = await client.get("/ui/traces/xyz")
    assert page.status_code == 200
    names = re.findall(
        r'<li class="span[^>]*>\s*<span class="label"[^>]*>\s*(?:<a [^>]*>)?([^<]+)', page.text
    )
    assert [n.strip() for n in names] == [
        "invoke_agent calc", "chat test", "execute_tool add", "chat test"
    ]  # fmt: skip
    assert missing.status_code == 404 and malformed.status_code == 422


async def test_the_overview_counts_the_windows_runs() -> None:
    assert percentile([], 50) is None
    assert percentile([10.0, 20.0, 30.0, 40.0], 50) == 20.0
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0


async def test_the_overview_reads_runs_of_the_window_only(app: FastAPI) -> None:
    invoker = services(app).invoker
    for text in ("a", "b", "c"):
        await invoker.invoke(RunRequest(tenant_id="default", agent="echo", input=text))
    records = services(app).records
    now = datetime.now(UTC)
    found = await overview(records, "default", "15m", now=now + timedelta(seconds=1))
    assert found.totals.runs == 3 and found.totals.failed == 0
    assert set(found.by_agent) == {"echo"} and found.p50_ms is not None
    assert sum(found.series["runs"]) == pytest.approx(3 * 60 / 15)  # per minute, 15 s buckets
    later = await overview(records, "default", "15m", now=now + timedelta(minutes=20))
    assert later.totals.runs == 0


async def test_cancel_and_retry_from_the_tasks_pages(app: FastAPI) -> None:
    tasks = services(app).tasks
    queued, _ = await tasks.submit("default", agent="echo", input="x", metadata={"n": 1})
    async with browser(app) as client:
        await sign_in(client, ADMIN)
        listing = await client.get("/ui/tasks")
        token = csrf_of(listing.text)
        home = await client.get("/ui/")
        assert re.search(r'data-testid="queued"><a [^>]*>1<', home.text)
        assert f'action="/ui/tasks/{queued.id}/cancel"' in listing.text
        early = await client.post(f"/ui/tasks/{queued.id}/retry", data={"csrf": token})
        assert early.status_code == 409 and error_code(early) == "task_not_ended"
        cancel = await client.post(f"/ui/tasks/{queued.id}/cancel", data={"csrf": token})
        assert cancel.status_code == 303
        assert (await tasks.get("default", queued.id)).status == "cancelled"
        retry = await client.post(f"/ui/tasks/{queued.id}/retry", data={"csrf": token})
        assert retry.status_code == 303
        new_id = retry.headers["location"].rsplit("/", 1)[1]
    again = await tasks.get("default", new_id)
    assert again.id != queued.id and again.status == "queued"
    assert again.metadata == {"n": 1, "retry_of": queued.id} and again.input == "x"


async def test_the_operator_checks_the_audit_chains(app: FastAPI) -> None:
    audit = services(app).audit
    assert audit is not None
    async with browser(app) as client:
        await sign_in(client, ADMIN)
        page = await client.get("/ui/audit")
        token = csrf_of(page.text)
        await client.post("/ui/keys", data={"name": "x", "scopes": "read", "csrf": token})
        await audit.flush()
        rows = await client.get("/ui/audit?action=ui.keys.create")
        assert rows.text.count("<td>ui.keys.create</td>") == 1
        verdict = await client.post("/ui/audit/verify", data={"csrf": token})
    assert verdict.status_code == 200
    assert "every one intact" in verdict.text


async def test_the_runs_list_filters_by_kind_task_and_time(app: FastAPI) -> None:
    invoker = services(app).invoker
    plain = await invoker.invoke(RunRequest(tenant_id="default", agent="echo", input="a"))
    tasked = await invoker.invoke(
        RunRequest(tenant_id="default", agent="echo", input="b", task_id="task_x")
    )

    def listed(html: str) -> list[str]:
        return re.findall(r'data-run="([^"]+)"', html)

    async with browser(app) as client:
        await sign_in(client, ADMIN)
        assert listed((await client.get("/ui/runs")).text) == [tasked.run_id, plain.run_id]
        assert listed((await client.get("/ui/runs?kind=task")).text) == [tasked.run_id]
        assert listed((await client.get("/ui/runs?kind=invoke")).text) == [plain.run_id]
        assert listed((await client.get("/ui/runs?task_id=task_x")).text) == [tasked.run_id]
        assert len(listed((await client.get("/ui/runs?within=15m")).text)) == 2
        paged = await client.get("/ui/runs?limit=1")
        assert listed(paged.text) == [tasked.run_id]
        older = re.search(r'href="(/ui/runs\?[^"]*cursor=[^"]+)"', paged.text)
        assert older is not None
        nxt = await client.get(older.group(1).replace("&amp;", "&"))
        assert listed(nxt.text) == [plain.run_id]
        bad = await client.get("/ui/runs?kind=batch")
    assert bad.status_code == 422 and error_code(bad) == "invalid_input"


def test_steps_pair_calls_with_answers_and_keep_guard_decisions() -> None:
    def event(seq: int, type_: str, span: str = "s0", **data: object) -> Event:
        return Event(
            type=type_, run_id="run_1", seq=seq, ts=1.0 + seq, tenant_id="t", agent="a",
            trace_id="0" * 32, span_id=span, data=data,
        )  # fmt: skip

    steps = steps_of(
        [
            event(1, "run.started", input="hi"),
            event(2, "llm.request", "m1", model="scripted:echo", step=1),
            event(3, "guard.flag", guard="pii", action="redact", surface="output", types=["email"]),
            event(4, "llm.response", "m1", model="scripted:echo", content="ok", prompt_tokens=2),
            event(5, "tool.call", "t1", id="c1", name="add", arguments={"a": 1}),
            event(6, "tool.result", "t1", id="c1", name="add", ok=True, output=2),
            event(7, "run.completed", output="ok", latency_ms=3),
        ]
    )
    assert [s.kind for s in steps] == ["run", "model", "guard", "tool", "end"]
    model, guard, tool_step = steps[1], steps[2], steps[3]
    assert model.result is not None and model.result["content"] == "ok"
    assert guard.data["types"] == ["email"] and guard.title == "guard.flag"
    assert tool_step.data["arguments"] == {"a": 1}
    assert tool_step.result is not None and tool_step.result["output"] == 2


async def test_a_runs_page_lists_the_runs_it_started(app: FastAPI) -> None:
    outcome = await services(app).invoker.invoke(
        RunRequest(tenant_id="default", agent="boss", input="x")
    )
    records = services(app).records
    child = (await records.list_runs("default", agent="echo")).items[0]
    assert child.parent_run_id == outcome.run_id
    async with browser(app) as client:
        await sign_in(client, ADMIN)
        parent_page = (await client.get(f"/ui/runs/{outcome.run_id}")).text
        child_page = (await client.get(f"/ui/runs/{child.id}")).text
    assert re.findall(r'data-child="([^"]+)"', parent_page) == [child.id]
    assert f'href="/ui/runs/{outcome.run_id}"' in child_page  # "Started by"
    assert "data-child=" not in child_page
