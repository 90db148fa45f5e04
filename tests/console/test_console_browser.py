"""The console end to end in a real browser: Debian's Chromium driven by Playwright against a
real embedded `taskbroker serve` (its supervised worker runs the tasks).

Sign in, watch a running task's progress change without a reload, open its result, cancel,
retry a failed task and follow the link, the dead-letter view, another user's task, a CSRF
refusal, the one-time sign-in link.  Every page is screenshotted into
``.taskbroker-test-logs/console/`` (kept as test artifacts).
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LOG_DIR
from tests.support.procs import Proc, base_env, free_port, start_process, taskbroker_argv, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = LOG_DIR / "console"
TASK_URL = re.compile(r"/ui/tasks/[0-9a-f-]{36}$")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An embedded server with its worker; users alice, bob (no roles) and root (admin)."""
    from taskbroker.mcp.tokens import add_token

    data_dir = tmp_path_factory.mktemp("console-data")
    tokens = data_dir / "tokens.json"
    users = {u: add_token(tokens, u, roles) for u, roles in
             (("alice", []), ("bob", []), ("root", ["admin"]))}
    port = free_port()
    env = base_env(TASKBROKER_DATA_DIR=str(data_dir), TASKBROKER_TOKEN_FILE=str(tokens),
                   TASKBROKER_HEARTBEAT_INTERVAL="1", TASKBROKER_WATCH_INTERVAL="0.1")
    proc: Proc = start_process(taskbroker_argv("serve", "--port", str(port)), env=env,
                               name="console-server", log_dir=LOG_DIR)
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200,
                 timeout=60, what="server up")
        wait_for(lambda: "ready" in proc.log(), timeout=60, what="worker ready")
        once = re.search(r"http://127\.0\.0\.1:\d+/ui/login/once\?code=\S+", proc.log())
        assert once, "the embedded server printed no one-time sign-in link"
        yield {"url": f"http://127.0.0.1:{port}", "tokens": users, "once": once.group(0),
               "proc": proc}
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), \
        "Debian's chromium is missing: `make test-deps` installs it (apt-get install chromium)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            yield chromium
        finally:
            chromium.close()


def sign_in(browser: Any, server: dict[str, Any], user: str) -> Any:
    """A new browser context signed in as ``user`` through the sign-in form; its page."""
    page = browser.new_context().new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{server['url']}/ui/tasks")
    assert "/ui/login" in page.url  # sent to sign in first
    page.get_by_label("Token").fill(server["tokens"][user])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/ui/tasks$"))
    assert page.get_by_test_id("user").text_content().startswith(user)
    return page


def start_from_form(page: Any, server: dict[str, Any], task_type: str,
                    **fields: str) -> str:
    """Start ``task_type`` from its form on the types page; the new task's id."""
    page.goto(f"{server['url']}/ui/types")
    card = page.locator(f"#type-{task_type}")
    for label, value in fields.items():
        card.get_by_label(label, exact=True).fill(value)
    card.get_by_role("button", name=f"Start {task_type}").click()
    page.wait_for_url(TASK_URL)
    return str(page.url.rsplit("/", 1)[1])


def percent(page: Any, scope: str = "") -> int:
    return int(page.locator(f"{scope} [data-field=percent]").first.text_content().rstrip("%"))


def test_progress_updates_live_and_the_result_opens(browser: Any, server: dict[str, Any]
                                                    ) -> None:
    page = sign_in(browser, server, "alice")
    page.screenshot(path=SHOTS / "tasks-empty.png", full_page=True)
    task_id = start_from_form(page, server, "test_count", N="40", **{"Step Ms": "250"})
    page.evaluate("window.__stay = 1")  # gone if the page reloads
    page.wait_for_function(
        "() => window.__stay === 1 && parseInt(document.querySelector("
        "'[data-testid=percent]').textContent) > 0")
    seen = percent(page)
    page.wait_for_function(
        f"() => window.__stay === 1 && parseInt(document.querySelector("
        f"'[data-testid=percent]').textContent) > {seen}")
    assert percent(page) > seen and page.get_by_test_id("status").text_content() == "started"
    assert re.fullmatch(r"step \d+/40", page.get_by_test_id("message").text_content() or "")
    page.screenshot(path=SHOTS / "task-running.png", full_page=True)

    # the list updates in place too
    page.goto(f"{server['url']}/ui/tasks")
    page.evaluate("window.__stay = 1")
    row = f"tr[data-task='{task_id}']"
    before = percent(page, row)
    page.wait_for_function(
        f"() => window.__stay === 1 && parseInt(document.querySelector("
        f"\"{row} [data-field=percent]\").textContent) > {before}")
    page.screenshot(path=SHOTS / "tasks-live.png", full_page=True)

    # at the end, the task page shows the result (it reloads itself once, at the finish)
    page.goto(f"{server['url']}/ui/tasks/{task_id}")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=status]').textContent === 'success'",
        timeout=60_000)
    page.wait_for_load_state()
    result = page.get_by_test_id("result")
    assert '"sum": 820' in (result.locator("pre").text_content() or "")  # 1 + ... + 40
    assert "step 40/40" in (page.get_by_test_id("timeline").text_content() or "")
    download = page.request.get(f"{server['url']}/ui/tasks/{task_id}/result.json")
    assert download.json() == {"sum": 820, "steps": 40}
    page.screenshot(path=SHOTS / "task-finished.png", full_page=True)


def test_cancel_from_the_task_page(browser: Any, server: dict[str, Any]) -> None:
    page = sign_in(browser, server, "alice")
    task_id = start_from_form(page, server, "test_sleep", Seconds="60")
    page.get_by_role("button", name="Cancel").click()
    page.wait_for_url(re.compile(f"/ui/tasks/{task_id}$"))
    assert page.get_by_test_id("status").text_content() == "revoked"
    assert page.get_by_test_id("canceled-by").text_content() == "alice"
    page.screenshot(path=SHOTS / "task-canceled.png", full_page=True)


def test_retry_a_failed_task_and_follow_the_link(browser: Any, server: dict[str, Any]) -> None:
    page = sign_in(browser, server, "alice")
    failed = start_from_form(page, server, "test_fail", Message="disk full")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=status]').textContent === 'failure'",
        timeout=60_000)
    page.wait_for_load_state()
    assert "RuntimeError: disk full" in (page.get_by_test_id("task-error").text_content() or "")
    page.get_by_role("button", name="Retry").click()
    # the failed task's own page matches TASK_URL too: wait for the retried task's page (a
    # plain wait_for_url(TASK_URL) could return before the retry's redirect)
    page.wait_for_url(lambda url: TASK_URL.search(url) is not None
                      and not url.endswith(failed))
    retried = page.url.rsplit("/", 1)[1]
    assert retried != failed
    link = page.get_by_test_id("retry-of")
    assert link.text_content() == failed
    link.click()
    page.wait_for_url(re.compile(f"/ui/tasks/{failed}$"))
    assert retried[:8] in (page.get_by_test_id("retries").text_content() or "")

    # the dead-letter view: grouped by type and error kind; retry a selection
    page.goto(f"{server['url']}/ui/failed")
    group = page.locator("fieldset.group", has_text="test_fail")
    assert "RuntimeError" in (group.locator("legend").text_content() or "")
    page.screenshot(path=SHOTS / "failed.png", full_page=True)
    page.get_by_label(f"select {failed[:8]}").check()
    page.get_by_role("button", name="Retry selected").click()
    started = page.get_by_test_id("started")
    assert f"retry of {failed[:8]}" in (started.text_content() or "")


def test_another_users_task_is_a_page_like_an_unknown_id(browser: Any, server: dict[str, Any]
                                                         ) -> None:
    alice = sign_in(browser, server, "alice")
    task_id = start_from_form(alice, server, "test_count", N="2")
    bob = sign_in(browser, server, "bob")
    texts = []
    for tid in (task_id, str(uuid.uuid4())):
        response = bob.goto(f"{server['url']}/ui/tasks/{tid}")
        assert response is not None and response.status == 404
        texts.append(bob.locator("main").inner_text())
    assert texts[0] == texts[1] and "No task with this id is visible to you." in texts[0]
    bob.goto(f"{server['url']}/ui/tasks")
    assert task_id[:8] not in bob.locator("main").inner_text()


def test_a_form_with_a_wrong_csrf_token_is_refused(browser: Any, server: dict[str, Any]
                                                   ) -> None:
    page = sign_in(browser, server, "alice")
    task_id = start_from_form(page, server, "test_sleep", Seconds="60")
    page.evaluate("document.querySelectorAll('input[name=csrf]')"
                  ".forEach(e => e.value = 'forged')")
    with page.expect_response(re.compile("/cancel$")) as refused:
        page.get_by_role("button", name="Cancel").click()
    assert refused.value.status == 403
    assert "CSRF token is missing or wrong" in (page.get_by_test_id("error").text_content()
                                                or "")
    page.goto(f"{server['url']}/ui/tasks/{task_id}")
    assert page.get_by_test_id("status").text_content() in ("pending", "started")
    page.get_by_role("button", name="Cancel").click()  # a real one, to free the worker
    page.wait_for_url(re.compile(f"/ui/tasks/{task_id}$"))


def test_the_one_time_link_admin_pages_and_phone_width(browser: Any, server: dict[str, Any]
                                                       ) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(server["once"])
    page.wait_for_url(re.compile(r"/ui/tasks$"))
    assert page.get_by_test_id("user").text_content() == "local (admin)"
    page.goto(f"{server['url']}/ui/workers")
    workers = page.get_by_test_id("workers").inner_text()
    assert "alive" in workers and "celery@" in workers
    page.screenshot(path=SHOTS / "workers.png", full_page=True)
    page.goto(f"{server['url']}/ui/types")
    page.screenshot(path=SHOTS / "types.png", full_page=True)
    phone = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    phone.context.add_cookies(context.cookies())
    phone.goto(f"{server['url']}/ui/tasks")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    phone.screenshot(path=SHOTS / "tasks-phone.png", full_page=True)

    again = browser.new_context().new_page()
    response = again.goto(server["once"])
    assert response is not None and response.status == 401
    assert "used or has expired" in (again.get_by_test_id("error").text_content() or "")
    again.screenshot(path=SHOTS / "login.png", full_page=True)
