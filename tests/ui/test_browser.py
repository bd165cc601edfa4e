"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against a real
``shipyard serve`` process (and a real worker for the tasks), over real HTTP.

Every page visited is screenshotted into ``tmp/artifacts/ui/`` (or ``$SHIPYARD_TEST_ARTIFACTS``)
and must log no JavaScript error. Chromium comes from ``apt-get install chromium``
(``scripts/services.sh`` installs it); without it these tests skip, or fail under
``SHIPYARD_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from tests.conftest import missing_service
from tests.e2e.test_api import make_key
from tests.e2e.test_tasks import wait_final
from tests.servers import ROOT, ServerProcess, WorkerProcess

CHROMIUM = os.environ.get("SHIPYARD_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = Path(os.environ.get("SHIPYARD_TEST_ARTIFACTS", ROOT / "tmp" / "artifacts")) / "ui"
APP = "tests.ui.apps:app"  # the end-to-end app, a routed agent and a guarded one
SIGNIN_FAILURES = 3
LIVE_S = 15_000  # ms: a live update comes within a second or two; the machine may be slow
FOCUSABLE = ", ".join(
    f"{part} {what}"
    for part in ("header", "main")
    for what in ("a[href]", "button", "input:not([type=hidden])", "select")
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if not Path(CHROMIUM).exists():
        missing_service(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    home = tmp_path_factory.mktemp("ui")
    env = {
        "SHIPYARD_TASK_MAX_ATTEMPTS": "2",
        "SHIPYARD_TASK_RETRY_BASE_S": "0.1",
        "SHIPYARD_UI_SIGNIN_FAILURES": str(SIGNIN_FAILURES),  # the throttle's test, run last
        "SHIPYARD_UI_SIGNIN_WINDOW_S": "3600",
    }
    started = ServerProcess(home=home, app=APP, env_extra=env).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def chromium(server: ServerProcess) -> Iterator[Browser]:
    playwright: Playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        yield client


class Session:
    """A browser context signed in with one key; it gathers console errors and screenshots."""

    def __init__(self, context: BrowserContext, base: str, name: str) -> None:
        self.context, self.base, self.name = context, base, name
        self.errors: list[str] = []
        self.page = self.new_page()

    def new_page(self) -> Page:
        page = self.context.new_page()
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        return page

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} at {message.location}")

    def go(self, path: str, page: Page | None = None) -> Page:
        target = page or self.page
        reply = target.goto(self.base + path)
        assert reply is not None and reply.status == 200, (path, reply and reply.status)
        return target

    def shot(self, label: str, page: Page | None = None) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (page or self.page).screenshot(path=ARTIFACTS / f"{self.name}-{label}.png", full_page=True)


def signed_in(chromium: Browser, server: ServerProcess, key: str, name: str) -> Session:
    """Sign in as a user would, with the keyboard: type the key, press Enter."""
    session = Session(chromium.new_context(), server.url, name)
    page = session.go("/ui/login")
    session.shot("login")
    page.keyboard.type(key)  # the key field has the focus
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/ui/$"))
    expect(page.locator("h1")).to_have_text("Overview")
    return session


@pytest.fixture
def admin(chromium: Browser, server: ServerProcess) -> Iterator[Session]:
    assert server.admin_key is not None
    session = signed_in(chromium, server, server.admin_key, "admin")
    yield session
    session.context.close()
    assert session.errors == []


def invoke(api: httpx.Client, agent: str, text: str) -> str:
    reply = api.post(f"/v1/agents/{agent}/invoke", json={"input": text})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["run_id"])


def test_every_page_renders_without_a_script_error(admin: Session, api: httpx.Client) -> None:
    invoke(api, "echo", "first")
    for label, path in [
        ("overview", "/ui/"), ("runs", "/ui/runs"), ("traces", "/ui/traces"),
        ("sessions", "/ui/sessions"), ("tasks", "/ui/tasks"), ("workers", "/ui/workers"),
        ("costs", "/ui/costs"), ("audit", "/ui/audit"), ("keys", "/ui/keys"),
    ]:  # fmt: skip
        page = admin.go(path)
        expect(page.locator("nav[aria-label=Sections] a[aria-current=page]")).to_have_count(1)
        admin.shot(label)
    session = api.post("/v1/sessions", json={"agent": "historian"}).json()["id"]
    api.post(f"/v1/sessions/{session}/turns", json={"input": "hello"})
    page = admin.go(f"/ui/sessions/{session}")
    expect(page.locator("ol.history")).to_contain_text("hello")
    expect(page.locator("main table")).to_contain_text("succeeded")
    admin.shot("session")
    page = admin.go("/ui/")
    expect(page.locator(".chart .uplot")).to_have_count(4)  # the charts were drawn


def test_a_run_appears_live_on_the_overview_and_the_runs_list(
    admin: Session, api: httpx.Client
) -> None:
    overview = admin.go("/ui/")
    before = int(overview.get_by_test_id("runs-total").inner_text().rstrip("+"))
    runs = admin.go("/ui/runs", admin.new_page())
    run_id = invoke(api, "echo", "live, please")
    expect(runs.locator(f'tr[data-run="{run_id}"]')).to_be_visible(timeout=LIVE_S)
    expect(overview.get_by_test_id("runs-total")).to_have_text(str(before + 1), timeout=LIVE_S)
    admin.shot("overview-live", overview)
    admin.shot("runs-live", runs)
    runs.locator(f'tr[data-run="{run_id}"] a').click()
    expect(runs.get_by_test_id("run-output")).to_contain_text("live, please")


def test_a_runs_timeline_shows_each_step_and_its_trace(admin: Session, api: httpx.Client) -> None:
    run_id = invoke(api, "calc", "2+3?")
    page = admin.go(f"/ui/runs/{run_id}")
    steps = page.locator("ol.timeline > li")
    expect(steps).to_have_count(5)
    assert [steps.nth(i).get_attribute("data-kind") for i in range(5)] == [
        "run", "model", "tool", "model", "end"
    ]  # fmt: skip
    tool = steps.nth(2)
    expect(tool).to_contain_text("tool · add")
    expect(tool.locator("pre").first).to_contain_text('"a": 2')
    expect(tool.locator("pre").nth(1)).to_contain_text("5")
    expect(steps.nth(3)).to_contain_text("It is 5.")
    admin.shot("run")
    page.get_by_role("link", name=re.compile("^[0-9a-f]{32}$")).click()
    expect(page.locator("ol.waterfall > li")).to_have_count(4)
    expect(page.locator("ol.waterfall")).to_contain_text("execute_tool add")
    admin.shot("trace")


def test_cancel_a_queued_task_and_retry_a_dead_one(
    admin: Session, api: httpx.Client, server: ServerProcess
) -> None:
    reply = api.post("/v1/tasks", json={"agent": "echo", "input": "wait"})
    queued = reply.json()["task_id"]  # no worker yet: it stays queued
    page = admin.go("/ui/tasks?status=queued")
    admin.shot("tasks-queued")
    page.get_by_role("button", name=f"Cancel task {queued}").click()
    expect(page.get_by_test_id("task-status")).to_have_text("cancelled")
    assert api.get(f"/v1/tasks/{queued}").json()["status"] == "cancelled"

    worker = WorkerProcess(server).start()
    try:
        page = admin.go("/ui/workers")
        expect(page.locator("main tbody")).to_contain_text("alive", timeout=LIVE_S)
        admin.shot("workers-alive")
        dead = api.post("/v1/tasks", json={"agent": "broken", "input": "x"}).json()["task_id"]
        assert wait_final(api, dead)["status"] == "dead"
        page = admin.go(f"/ui/tasks/{dead}")
        admin.shot("task-dead")
        page.get_by_role("button", name=f"Retry task {dead}").click()
        expect(page.locator("h1")).not_to_contain_text(dead)
        expect(page.locator("dt:text('Retry of') + dd")).to_have_text(dead)
        retried = page.url.rsplit("/", 1)[1]
        assert api.get(f"/v1/tasks/{retried}").json()["agent"] == "broken"  # a real new task
        admin.shot("task-retried")
        # the dead task's run ran in the worker: its trace is there, drawn as a waterfall
        admin.go(f"/ui/tasks/{dead}")
        page.locator("dt:text('Last run') + dd a").click()
        page.get_by_role("link", name=re.compile("^[0-9a-f]{32}$")).click()
        expect(page.locator("ol.waterfall > li").first).to_contain_text("invoke_agent broken")
        admin.shot("trace-worker")
        assert wait_final(api, retried)["status"] == "dead"
    finally:
        worker.stop()


def test_a_read_only_key_sees_no_admin_action_and_no_other_tenant(
    chromium: Browser, server: ServerProcess, api: httpx.Client
) -> None:
    theirs = invoke(api, "echo", "the default tenant's")
    api.post("/v1/tasks", json={"agent": "echo", "input": "default's task"})
    key = make_key(server, "acme", "read")
    viewer = signed_in(chromium, server, key, "readonly")
    try:
        expect(viewer.page.get_by_test_id("tenant")).to_have_text("acme")
        nav = viewer.page.locator("nav[aria-label=Sections]")
        expect(nav.get_by_role("link", name="Keys")).to_have_count(0)
        expect(nav.get_by_role("link", name="Audit")).to_have_count(0)
        for label, path in [("runs", "/ui/runs"), ("tasks", "/ui/tasks")]:
            page = viewer.go(path)
            expect(page.locator("main form[method=post]")).to_have_count(0)
            expect(page.locator("main")).not_to_contain_text(theirs)
            viewer.shot(label)
        assert viewer.errors == []
        assert viewer.page.goto(server.url + "/ui/keys").status == 403  # type: ignore[union-attr]
        other = viewer.page.goto(server.url + "/ui/runs?tenant=default")
        assert other is not None and other.status == 403
        # a refusal is a page, but the browser still logs its 403 status as a console error
        viewer.errors = [e for e in viewer.errors if "403" not in e]
    finally:
        viewer.context.close()
    assert viewer.errors == []


@pytest.mark.parametrize(
    "path", ["/ui/", "/ui/runs", "/ui/tasks", "/ui/keys", "/ui/audit", "/ui/costs"]
)
def test_the_keyboard_reaches_every_action(admin: Session, api: httpx.Client, path: str) -> None:
    if path == "/ui/tasks":
        api.post("/v1/tasks", json={"agent": "echo", "input": "to cancel"})
    page = admin.go(path)
    wanted = page.eval_on_selector_all(
        FOCUSABLE, "els => els.filter(e => e.offsetParent !== null).map(e => e.outerHTML)"
    )
    reached: list[str] = []
    for _ in range(len(wanted) + 5):
        page.keyboard.press("Tab")
        html = page.evaluate("document.activeElement ? document.activeElement.outerHTML : ''")
        if html in reached:
            break
        reached.append(html)
    assert [w for w in wanted if w not in reached] == []


def test_a_run_still_going_updates_live(admin: Session, api: httpx.Client) -> None:
    """A run's page opened while it runs shows its steps as they are recorded, then its end."""
    with ThreadPoolExecutor(1) as pool:
        done = pool.submit(api.post, "/v1/agents/slower_echo/invoke", json={"input": "slowly"})
        run_id = None
        deadline = time.monotonic() + 30
        while run_id is None and time.monotonic() < deadline:
            running = api.get("/v1/runs", params={"agent": "slower_echo", "status": "running"})
            found = running.json()["runs"]
            run_id = found[0]["id"] if found else None
        assert run_id is not None, "the run never showed as running"
        page = admin.go(f"/ui/runs/{run_id}")
        expect(page.get_by_test_id("run-status")).to_have_text("succeeded", timeout=LIVE_S)
        expect(page.locator("ol.timeline > li").last).to_have_attribute("data-kind", "end")
        assert done.result().status_code == 200
    admin.shot("run-live")


def test_search_the_runs_by_keyboard(admin: Session, api: httpx.Client) -> None:
    wanted = invoke(api, "echo", "where is my parcel, Zanzibar?")
    invoke(api, "echo", "something else")
    page = admin.go("/ui/runs")
    page.keyboard.press("Tab")  # the skip link first, then the header's links
    page.get_by_label("Search").focus()
    expect(page.get_by_label("Search")).to_be_focused()
    page.keyboard.type("zanzibar")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"q=zanzibar"))
    expect(page.locator("#runs-rows tr[data-run]")).to_have_count(1)
    expect(page.locator(f'tr[data-run="{wanted}"]')).to_be_visible()
    expect(page.get_by_test_id("search-note")).to_contain_text("last 24h")
    admin.shot("runs-search")


def test_spending_by_model_and_tenant_and_the_costs_page(admin: Session, api: httpx.Client) -> None:
    put = api.put("/v1/budgets/default", json={"usd_per_day": 5, "tokens_per_day": 100000})
    assert put.status_code == 200, put.text
    invoke(api, "routed", "spend a little")
    page = admin.go("/ui/?by=model")
    expect(page.get_by_test_id("breakdown")).to_contain_text("router:picker")
    expect(page.locator("[data-chart=by-tokens] .uplot")).to_have_count(1)
    expect(page.locator("[data-chart=by-cost] .u-legend")).to_contain_text("router:picker")
    admin.shot("overview-by-model")
    page.get_by_role("link", name="tenant", exact=True).click()  # the operator's choice
    expect(page.get_by_test_id("breakdown").locator("tr[data-group=default]")).to_be_visible()
    admin.shot("overview-by-tenant")
    page = admin.go("/ui/costs")
    expect(page.get_by_test_id("budgets").locator("tr[data-scope=tenant]")).to_have_count(2)
    expect(page.get_by_test_id("costs-day").locator("tbody tr")).to_have_count(7)
    expect(page.get_by_test_id("costs-model")).to_contain_text("router:picker")
    expect(page.get_by_test_id("costs-agent")).to_contain_text("routed")
    admin.shot("costs")


def test_a_runs_page_shows_routing_guards_and_redacted_messages(
    admin: Session, api: httpx.Client
) -> None:
    routed = invoke(api, "routed", "which model?")
    page = admin.go(f"/ui/runs/{routed}")
    expect(page.locator("li.step[data-kind=route]")).to_contain_text("route · picker")
    expect(page.get_by_test_id("route-chosen")).to_have_text("scripted:echo")
    admin.shot("run-routed")
    guarded = invoke(api, "guarded", "mail bob@example.com now")
    page = admin.go(f"/ui/runs/{guarded}")
    expect(page.locator("li.step[data-kind=guard]")).to_contain_text("redact · on input")
    expect(page.locator("main")).not_to_contain_text("bob@example.com")
    summary = page.locator("details.messages summary").first
    summary.focus()
    page.keyboard.press("Enter")  # opened by keyboard
    message = page.locator("details.messages li.msg[data-role=user]").first
    expect(message.locator("mark.redacted")).to_have_text("[EMAIL_ADDRESS]")
    admin.shot("run-guarded")


def test_error_pages_are_pages(admin: Session) -> None:
    reply = admin.page.goto(admin.base + "/ui/no-such-page")
    assert reply is not None and reply.status == 404
    expect(admin.page.locator("h1")).to_have_text("404 · Not found")
    admin.shot("error-404")
    admin.page.get_by_role("link", name="Back to the overview").focus()
    admin.page.keyboard.press("Enter")
    admin.page.wait_for_url(re.compile(r"/ui/$"))
    admin.errors = [e for e in admin.errors if "404" not in e]  # the status, logged


def test_failed_sign_ins_get_a_429_page(chromium: Browser, server: ServerProcess) -> None:
    """Last in the module: it spends this address's failures for the rest of the hour."""
    session = Session(chromium.new_context(), server.url, "throttled")
    try:
        page = session.go("/ui/login")
        statuses = []
        for _ in range(SIGNIN_FAILURES + 1):
            page.locator("#key").fill("sk_shp_a_guess")
            with page.expect_navigation() as answered:
                page.keyboard.press("Enter")
            statuses.append(answered.value.status if answered.value else None)
        assert statuses == [401] * SIGNIN_FAILURES + [429]
        expect(page.locator("h1")).to_have_text("429 · Too many attempts")
        session.shot("signin-429")
    finally:
        session.context.close()
    assert [e for e in session.errors if "401" not in e and "429" not in e] == []
