"""The overview's spending by agent, model and tenant, the costs page, and the runs search, in
process on a real SQLite record store."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI

from shipyard.agents.context import RunRequest
from shipyard.api.keys import KeyService
from shipyard.api.ui.costs import ClosedDays
from shipyard.api.ui.render import redacted
from shipyard.config import load_settings
from shipyard.runtime.services import Services
from shipyard.telemetry.events import Event
from tests.ui import apps as ui_apps
from tests.ui.conftest import ADMIN, browser, sign_in

BEARER = {"Authorization": f"Bearer {ADMIN}"}


def services(app: FastAPI) -> Services:
    found: Services = app.state.services
    return found


async def invoke(app: FastAPI, text: str, tenant: str = "default") -> str:
    outcome = await services(app).invoker.invoke(
        RunRequest(tenant_id=tenant, agent="echo", input=text)
    )
    return outcome.run_id


def groups(html: str, table: str) -> dict[str, str]:
    """A table's rows: first cell's group -> the row's HTML."""
    body = html.split(f'data-testid="{table}"', 1)[1].split("</table>", 1)[0]
    return dict(re.findall(r'<tr data-[a-z]+="([^"]*)">(.*?)</tr>', body, re.S))


async def test_the_overview_breaks_spending_down_by_agent_model_and_tenant(app: FastAPI) -> None:
    await invoke(app, "one")
    await invoke(app, "two")
    await invoke(app, "theirs", tenant="globex")
    async with browser(app) as client:
        await sign_in(client, ADMIN)
        by_agent = (await client.get("/ui/?by=agent")).text
        by_model = (await client.get("/ui/?by=model")).text
        by_tenant = (await client.get("/ui/?by=tenant")).text
        data = (await client.get("/ui/overview.json?by=model&window=15m")).json()
    assert list(groups(by_agent, "breakdown")) == ["echo"]
    assert "<td>2</td>" in groups(by_agent, "breakdown")["echo"]  # two model calls
    assert list(groups(by_model, "breakdown")) == ["scripted:echo"]
    assert sorted(groups(by_tenant, "breakdown")) == ["default", "globex"]  # the operator's
    assert data["by"]["labels"] == ["scripted:echo"]
    assert len(data["by"]["tokens"][0]) == len(data["times"]) and sum(data["by"]["tokens"][0]) > 0


async def test_a_tenants_key_sees_its_own_spending_by_tenant(app: FastAPI) -> None:
    keys: KeyService = app.state.keys
    secret, _ = await keys.create("globex", ["read"], name="viewer")
    await invoke(app, "ours")
    await invoke(app, "theirs", tenant="globex")
    async with browser(app) as client:
        await sign_in(client, secret)
        home = (await client.get("/ui/")).text
        forced = (await client.get("/ui/?by=tenant")).text
        costs = (await client.get("/ui/costs")).text
    assert "by=tenant" not in home  # no such choice offered
    assert list(groups(forced, "breakdown")) == ["globex"]
    assert list(groups(costs, "costs-tenant")) == ["globex"]
    assert list(groups(costs, "costs-agent")) == ["echo"]


async def test_the_costs_page_shows_spend_by_day_agent_model_tenant_and_budgets(
    app: FastAPI,
) -> None:
    async with browser(app) as client:
        put = await client.put(
            "/v1/budgets/default",
            json={"tokens_per_day": 100000, "agents": {"echo": {"usd_per_month": 5}}},
            headers=BEARER,
        )
        assert put.status_code == 200, put.text
        await invoke(app, "spend something")
        await invoke(app, "theirs", tenant="globex")
        await sign_in(client, ADMIN)
        page = await client.get("/ui/costs?days=7d")
        week = (await client.get("/ui/costs?days=30d")).text
        bad = await client.get("/ui/costs?days=9d")
        api = (await client.get("/v1/budgets", headers=BEARER)).json()
    assert page.status_code == 200
    days = groups(page.text, "costs-day")
    assert len(days) == 7 and len(groups(week, "costs-day")) == 30
    today = next(iter(days.values()))
    assert re.search(r"<td>1</td><td>[1-9]\d*</td>", today), today  # one call, some tokens
    assert all("<td>0</td><td>0</td>" in row for row in list(days.values())[1:])
    assert list(groups(page.text, "costs-agent")) == ["echo"]
    assert list(groups(page.text, "costs-model")) == ["scripted:echo"]
    assert sorted(groups(page.text, "costs-tenant")) == ["default", "globex"]
    budgets = groups(page.text, "budgets")
    scopes = sorted(s["scope"] for s in api["standing"])
    assert sorted(budgets) == scopes == ["agent:echo", "tenant"]
    spent = next(s for s in api["standing"] if s["scope"] == "tenant")["spent"]
    assert spent > 0 and f"<td>{spent:.4f}</td>" in budgets["tenant"]  # the API's own numbers
    assert bad.status_code == 422


async def test_the_runs_list_searches_inputs_and_outputs(app: FastAPI) -> None:
    parcel = await invoke(app, "Where is my parcel?")
    await invoke(app, "unrelated")
    theirs = await invoke(app, "my parcel too", tenant="globex")
    async with browser(app) as client:
        await sign_in(client, ADMIN)
        found = (await client.get("/ui/runs?q=PARCEL")).text
        output = (await client.get("/ui/runs?q=echo:%20where")).text  # the answer's text
        nothing = (await client.get("/ui/runs?q=absent&within=7d")).text
        too_long = await client.get("/ui/runs?q=" + "x" * 201)
    assert re.findall(r'data-run="([^"]+)"', found) == [parcel]
    assert theirs not in found and "last 24h" in found
    assert re.findall(r'data-run="([^"]+)"', output) == [parcel]
    assert "No runs match." in nothing and "last 7d" in nothing
    assert too_long.status_code == 422


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[FastAPI]:
    """The browser tests' app (a routed agent, a guarded one), in process."""
    settings = load_settings(home=tmp_path, admin_key=ADMIN, log_events=False, metrics=False)
    asgi = ui_apps.app.asgi(settings)
    async with asgi.router.lifespan_context(asgi):
        yield asgi


async def run_page(app: FastAPI, agent: str, text: str) -> str:
    outcome = await services(app).invoker.invoke(
        RunRequest(tenant_id="default", agent=agent, input=text)
    )
    async with browser(app) as client:
        await sign_in(client, ADMIN)
        return (await client.get(f"/ui/runs/{outcome.run_id}")).text


async def test_a_runs_timeline_shows_its_routing_decisions(served: FastAPI) -> None:
    page = await run_page(served, "routed", "route me")
    assert re.findall(r'data-kind="(\w+)"', page) == ["run", "model", "route", "end"]
    assert "route · picker → scripted:echo" in page
    assert (
        "reason: default" in page and "candidates scripted:echo?delay_ms=1, scripted:echo" in page
    )


async def test_a_model_calls_messages_show_guard_redactions_as_such(served: FastAPI) -> None:
    page = await run_page(served, "guarded", "write to bob@example.com please")
    assert "bob@example.com" not in page  # stored after the guard: never the address
    assert re.findall(r'data-kind="(\w+)"', page) == ["run", "guard", "model", "end"]
    assert "guard <strong>pii</strong> · redact · on input · found EMAIL_ADDRESS" in page
    messages = page.split('class="messages"', 1)[1].split("</details>", 1)[0]
    assert "Messages sent (1 recorded)" in messages
    assert re.search(r'data-role="user">.*write to <mark class="redacted"[^>]*>\[EMAIL_ADDRESS\]'
                     r"</mark> please", messages, re.S)  # fmt: skip
    assert page.count('<mark class="redacted"') >= 4  # input, message, answer, output


def test_markers_of_every_guard_action_are_marked() -> None:
    text = "a [IBAN] b [EMAIL_ADDRESS:0123456789ab] <PERSON_2> ******** [blocked by guard] <b>"
    shown = str(redacted(text))
    assert shown.count("<mark") == 5 and "&lt;b&gt;" in shown  # the rest stays escaped
    assert "<mark" not in str(redacted("[not a marker] list[int] *** <x_1>"))


async def test_filter_forms_submitted_with_any_answer_pages(app: FastAPI) -> None:
    """A form's "any" is an empty value: the runs, tasks and audit filters take it as unset."""
    await invoke(app, "Where is my parcel?")
    async with browser(app) as client:
        await sign_in(client, ADMIN)
        runs = await client.get(
            "/ui/runs?q=parcel&agent=&status=&kind=&within=&session_id=&task_id="
        )
        tasks = await client.get("/ui/tasks?status=&agent=")
        audit = await client.get("/ui/audit?action=&key=&outcome=")
    assert runs.status_code == tasks.status_code == audit.status_code == 200
    assert runs.text.count("data-run=") == 1 and "last 24h" in runs.text


async def test_closed_days_are_read_once_per_ttl(app: FastAPI) -> None:
    """The costs page keeps the days before today for a while: a call recorded on one of them
    shows once its range is read again (``CLOSED_DAYS_TTL_S``)."""
    records = services(app).records
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    since = today - timedelta(days=3)

    async def late_call(n: int) -> None:
        await records.write_batch([], [yesterday_call(f"run_late{n}", today)])

    kept, fresh = ClosedDays(ttl_s=3600), ClosedDays(ttl_s=0)
    assert await kept.read(records, "default", "agent", since, today) == []
    await late_call(1)
    assert await kept.read(records, "default", "agent", since, today) == []  # kept
    found = await fresh.read(records, "default", "agent", since, today)
    assert [(p.value, p.calls, p.at) for p in found] == [("late", 1, today - timedelta(days=1))]
    assert await kept.read(records, "default", "agent", since, since) == []  # an empty range


def yesterday_call(run_id: str, today: datetime) -> Event:
    return Event(
        type="llm.response", run_id=run_id, seq=1, tenant_id="default", agent="late",
        ts=(today - timedelta(hours=12)).timestamp(), trace_id="0" * 32, span_id="1" * 16,
        data={"model": "m", "prompt_tokens": 1, "completion_tokens": 1, "cost_usd": 0.5},
    )  # fmt: skip
