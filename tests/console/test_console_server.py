"""The console's endpoints over HTTP (Starlette's test client on the real console app and a
real TaskService with its in-memory ledger): who may see and do what, sign-in, CSRF, headers.

The browser tests (test_console_browser.py) drive the same pages in Chromium against a real
server and worker; these check every endpoint's authorization exhaustively and fast.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from taskbroker.console.app import ConsoleOptions, create_console_app
from taskbroker.console.auth import COOKIE, LOGIN_COOKIE, SessionCodec
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.waiting import TaskWatcher, WaitSlots
from taskbroker.mcp.tokens import StaticTokenVerifier, add_token
from taskbroker.testing.in_process import InProcessTaskbroker, in_process_taskbroker

SECRET = b"s" * 32
BASE = "http://testserver/ui"
ORIGIN = "http://testserver"


class World:
    """An in-process taskbroker, its console, and a token per user."""

    def __init__(self, tmp: Path, *, secure_cookies: bool = False,
                 slots: WaitSlots | None = None) -> None:
        self.tb: InProcessTaskbroker = in_process_taskbroker(
            plugin_modules=["tests.support.sample_plugin"],
            settings={"rate_limits": "start: 1000/minute"})
        token_file = tmp / "tokens.json"
        self.tokens = {"alice": add_token(token_file, "alice", []),
                       "bob": add_token(token_file, "bob", []),
                       "root": add_token(token_file, "root", ["admin"])}
        service = self.tb.app.service
        console_app, self.console = create_console_app(
            service, verifier=StaticTokenVerifier(token_file),
            watcher=TaskWatcher(service.ledger, interval=0.05),
            options=ConsoleOptions(secret=SECRET, trace_url="https://traces.example/{trace_id}",
                                   secure_cookies=secure_cookies,
                                   slots=slots or WaitSlots(100)))
        # mounted at /ui as `serve` mounts it (its cookies are scoped to /ui)
        self.app = Starlette(routes=[Mount("/ui", console_app)])

    def client(self, user: str | None = None) -> TestClient:
        """A client signed in as ``user`` through the sign-in form (None: signed out)."""
        client = TestClient(self.app, base_url=BASE, follow_redirects=False)
        if user is not None:
            form = client.get("/login")
            nonce = client.cookies.get(LOGIN_COOKIE)
            assert form.status_code == 200 and nonce
            done = client.post("/login", data={"token": self.tokens[user], "nonce": nonce,
                                               "next": "/ui/tasks"})
            assert done.status_code == 303, done.text
        return client

    def task(self, user: str, task_type: str = "test_count", **params: object) -> str:
        """A task started by ``user`` (queued; run with :meth:`run`)."""
        return self.tb.app.service.start(Principal(user), task_type, dict(params)).task_id

    def run(self) -> None:
        self.tb.run_pending()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield World(tmp_path)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found, "no CSRF token in the page"
    return found.group(1)


def test_signed_out_pages_redirect_to_sign_in_and_actions_are_refused(world: World) -> None:
    task_id = world.task("alice")
    anon = world.client()
    for path in ("/tasks", f"/tasks/{task_id}", f"/tasks/{task_id}/result.json",
                 f"/tasks/{task_id}/events", "/events", "/failed", "/workers", "/types"):
        r = anon.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next="), path
    for path in (f"/tasks/{task_id}/cancel", f"/tasks/{task_id}/retry", "/failed/retry",
                 "/types/test_count/start", "/logout"):
        r = anon.post(path, data={"csrf": "x"})
        assert r.status_code == 403, path
    assert world.tb.status(task_id).status == "pending"  # nothing was canceled


def test_sign_in_sets_a_strict_http_only_cookie_and_keeps_no_token(world: World) -> None:
    client = TestClient(world.app, base_url=BASE, follow_redirects=False)
    form = client.get("/login")
    nonce = client.cookies.get(LOGIN_COOKIE)
    r = client.post("/login", data={"token": world.tokens["alice"], "nonce": nonce,
                                    "next": "/ui/failed"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/failed"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith(f"{COOKIE}="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert world.tokens["alice"] not in cookie
    session = SessionCodec(SECRET).loads(client.cookies.get(COOKIE))
    assert session is not None and session.principal == Principal("alice", frozenset())
    page = client.get("/tasks")
    assert page.status_code == 200 and world.tokens["alice"] not in page.text
    assert form.status_code == 200


def test_behind_a_tls_proxy_the_cookie_is_secure(tmp_path: Path) -> None:
    """The proxy speaks plain HTTP to us; TASKBROKER_PUBLIC_URL is https (secure_cookies)."""
    world = World(tmp_path, secure_cookies=True)
    client = TestClient(world.app, base_url=BASE, follow_redirects=False)
    form = client.get("/login")
    login_cookie = form.headers["set-cookie"]
    assert "Secure" in login_cookie
    nonce = login_cookie.split(";")[0].split("=", 1)[1]
    r = client.post("/login", data={"token": world.tokens["alice"], "nonce": nonce},
                    headers={"Cookie": f"{LOGIN_COOKIE}={nonce}"})
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith(f"{COOKIE}="))
    assert "Secure" in cookie
    (tmp_path / "plain").mkdir()
    plain = World(tmp_path / "plain").client().get("/login").headers["set-cookie"]
    assert "Secure" not in plain


def test_a_bad_token_a_missing_nonce_and_an_outside_next_are_refused(world: World) -> None:
    client = TestClient(world.app, base_url=BASE, follow_redirects=False)
    client.get("/login")
    nonce = client.cookies.get(LOGIN_COOKIE)
    saved = structlog.get_config()
    structlog.reset_defaults()
    try:
        with capture_logs() as events:
            bad = client.post("/login", data={"token": "tb_wrong", "nonce": nonce})
    finally:
        structlog.configure(**saved)
    assert bad.status_code == 401 and "not accepted" in bad.text
    assert [e["action"] for e in events if e.get("audit")] == ["console.signin_refused"]
    assert "tb_wrong" not in repr(events)
    assert client.cookies.get(COOKIE) is None
    client.get("/login")
    no_nonce = client.post("/login", data={"token": world.tokens["alice"], "nonce": "forged"})
    assert no_nonce.status_code == 403 and client.cookies.get(COOKIE) is None
    client.get("/login")
    nonce = client.cookies.get(LOGIN_COOKIE)
    away = client.post("/login", data={"token": world.tokens["alice"], "nonce": nonce,
                                       "next": "//evil.example/x"})
    assert away.status_code == 303 and away.headers["location"] == "/ui/tasks"


def test_sign_in_attempts_are_limited_per_address(world: World) -> None:
    client = TestClient(world.app, base_url=BASE, follow_redirects=False)
    codes = []
    for _ in range(11):
        client.get("/login")
        codes.append(client.post("/login", data={
            "token": "tb_wrong", "nonce": client.cookies.get(LOGIN_COOKIE)}).status_code)
    assert codes == [401] * 10 + [429]


def test_a_forged_or_expired_cookie_is_not_a_session(world: World) -> None:
    codec = SessionCodec(SECRET)
    expired = codec.dumps(codec.new(Principal("root", frozenset({"admin"})),
                                    expires_at=time.time() - 1))
    forged = SessionCodec(b"x" * 32).dumps(codec.new(Principal("root", frozenset({"admin"}))))
    for value in (expired, forged, "garbage"):
        client = TestClient(world.app, base_url=BASE, follow_redirects=False,
                            cookies={COOKIE: value})
        assert client.get("/workers").status_code == 303


def test_a_one_time_link_signs_in_once(world: World) -> None:
    code = world.console.codes.issue(Principal("root", frozenset({"admin"})))
    first = TestClient(world.app, base_url=BASE, follow_redirects=False)
    assert first.get(f"/login/once?code={code}").status_code == 303
    assert first.get("/workers").status_code == 200
    again = TestClient(world.app, base_url=BASE, follow_redirects=False)
    r = again.get(f"/login/once?code={code}")
    assert r.status_code == 401 and "used or has expired" in r.text
    assert again.get("/workers").status_code == 303


def test_another_users_task_reads_exactly_like_an_unknown_one(world: World) -> None:
    task_id = world.task("alice")
    unknown = str(uuid.uuid4())
    bob = world.client("bob")
    pages = {}
    for tid in (task_id, unknown):
        got = [bob.get(f"/tasks/{tid}"), bob.get(f"/tasks/{tid}/result.json"),
               bob.get(f"/tasks/{tid}/events")]
        assert [r.status_code for r in got] == [404, 404, 404]
        pages[tid] = [r.text.replace(tid, "ID") for r in got]
    assert pages[task_id] == pages[unknown]
    tasks_page = bob.get("/tasks").text
    csrf = csrf_of(bob.get("/types").text)
    for action in ("cancel", "retry"):
        r = bob.post(f"/tasks/{task_id}/{action}", data={"csrf": csrf})
        assert r.status_code == 404, action
    assert task_id not in tasks_page
    assert world.tb.status(task_id).status == "pending"


def test_users_list_their_own_tasks_and_admins_everybodys(world: World) -> None:
    mine = world.task("alice")
    theirs = world.task("bob")
    alice = world.client("alice").get("/tasks").text
    assert mine[:8] in alice and theirs[:8] not in alice and 'name="owner"' not in alice
    root = world.client("root")
    everyone = root.get("/tasks").text
    assert mine[:8] in everyone and theirs[:8] in everyone
    only_bob = root.get("/tasks?owner=bob").text
    assert theirs[:8] in only_bob and mine[:8] not in only_bob
    # a user's owner filter is ignored: still only their own
    assert theirs[:8] not in world.client("alice").get("/tasks?owner=bob").text


def test_list_filters_are_validated_by_name(world: World) -> None:
    alice = world.client("alice")
    for query, field in (("status=done", "status"), ("sort=params", "sort"),
                         ("since=yesterday", "since"), ("page=0", "page")):
        r = alice.get(f"/tasks?{query}")
        assert r.status_code == 400 and f"{field}:" in r.text, query


def test_cancel_and_retry_go_through_the_service(world: World) -> None:
    alice = world.client("alice")
    running = world.task("alice", "test_sleep", seconds=30)
    page = alice.get(f"/tasks/{running}")
    r = alice.post(f"/tasks/{running}/cancel", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 303 and r.headers["location"] == f"/ui/tasks/{running}"
    assert world.tb.status(running).status == "revoked"
    detail = alice.get(f"/tasks/{running}").text
    assert 'data-testid="canceled-by">alice<' in detail
    failed = world.task("alice", "test_fail", message="nope")
    world.run()
    r = alice.post(f"/tasks/{failed}/retry", data={"csrf": csrf_of(detail)})
    assert r.status_code == 303
    new_id = r.headers["location"].rsplit("/", 1)[1]
    assert new_id != failed
    assert world.tb.app.service.ledger.get(new_id).retry_of == failed  # type: ignore[union-attr]
    assert f'href="/ui/tasks/{failed}" data-testid="retry-of"' in alice.get(
        f"/tasks/{new_id}").text
    assert new_id[:8] in alice.get(f"/tasks/{failed}").text  # "Retried as"


def test_a_wrong_csrf_token_or_a_cross_site_origin_is_refused(world: World) -> None:
    alice = world.client("alice")
    task_id = world.task("alice")
    csrf = csrf_of(alice.get(f"/tasks/{task_id}").text)
    bob_csrf = csrf_of(world.client("bob").get("/types").text)
    assert alice.post(f"/tasks/{task_id}/cancel", data={}).status_code == 403
    assert alice.post(f"/tasks/{task_id}/cancel", data={"csrf": bob_csrf}).status_code == 403
    r = alice.post(f"/tasks/{task_id}/cancel", data={"csrf": csrf},
                   headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    r = alice.post(f"/tasks/{task_id}/cancel", data={"csrf": csrf},
                   headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert world.tb.status(task_id).status == "pending"
    same = alice.post(f"/tasks/{task_id}/cancel", data={"csrf": csrf},
                      headers={"Origin": ORIGIN})
    assert same.status_code == 303 and world.tb.status(task_id).status == "revoked"


def test_workers_page_is_for_admins(world: World) -> None:
    world.tb.app.service.ledger.worker_seen("celery@w1", pid=1, queues=["taskbroker"],
                                            started_at=None)
    assert world.client("alice").get("/workers").status_code == 403
    page = world.client("root").get("/workers")
    assert page.status_code == 200 and "celery@w1" in page.text and "alive" in page.text


def test_the_start_form_validates_like_mcp_and_respects_roles(world: World) -> None:
    alice = world.client("alice")
    types = alice.get("/types").text
    csrf = csrf_of(types)
    assert 'action="/ui/types/test_count/start"' in types
    assert 'action="/ui/types/test_admin_only/start"' not in types  # needs admin
    bad = alice.post("/types/test_count/start", data={"csrf": csrf, "p.n": "5000"})
    assert bad.status_code == 400 and "n" in bad.text and "1000" in bad.text
    typo = alice.post("/types/test_count/start", data={"csrf": csrf, "p.n": "five"})
    assert typo.status_code == 400 and "params.n: expected a whole number" in typo.text
    denied = alice.post("/types/test_admin_only/start", data={"csrf": csrf})
    assert denied.status_code == 403
    ok = alice.post("/types/test_count/start", data={"csrf": csrf, "p.n": "4",
                                                     "p.step_ms": "0"})
    assert ok.status_code == 303
    task_id = ok.headers["location"].rsplit("/", 1)[1]
    world.run()
    assert world.tb.status(task_id).result == {"sum": 10, "steps": 4}


def test_a_finished_task_shows_its_result_timeline_and_download(world: World) -> None:
    alice = world.client("alice")
    task_id = world.task("alice", "test_count", n=3, step_ms=0)
    world.run()
    page = alice.get(f"/tasks/{task_id}").text
    assert "step 2/3" in page and "&#34;sum&#34;: 6" in page
    download = alice.get(f"/tasks/{task_id}/result.json")
    assert download.json() == {"sum": 6, "steps": 3}
    assert download.headers["content-disposition"] == f'attachment; filename="task-{task_id}.json"'


def test_failed_view_groups_and_retries_a_selection(world: World) -> None:
    alice = world.client("alice")
    ids = [world.task("alice", "test_fail", message=f"m{i}") for i in range(3)]
    world.run()
    page = alice.get("/failed").text
    assert "test_fail" in page and "RuntimeError" in page and "· 3</legend>" in page
    r = alice.post("/failed/retry", data={"csrf": csrf_of(page), "task_id": ids[:2]})
    assert r.status_code == 200
    started = re.findall(r'retry of <a href="/ui/tasks/([0-9a-f-]{36})"', r.text)
    assert sorted(started) == sorted(ids[:2])


def test_security_headers_on_every_page(world: World) -> None:
    alice = world.client("alice")
    for path in ("/tasks", "/types", "/failed", "/login"):
        h = alice.get(path).headers
        assert "script-src 'self'" in h["content-security-policy"]
        assert "frame-ancestors 'none'" in h["content-security-policy"]
        assert h["x-content-type-options"] == "nosniff" and h["cache-control"] == "no-store"
    assert "<script>" not in alice.get("/tasks").text  # no inline script (the CSP forbids it)


def test_live_update_streams_count_against_the_users_wait_cap(tmp_path: Path) -> None:
    """Each live-update stream holds one of the user's wait slots (shared with MCP waits):
    past the cap a new stream is refused with 429, another user is not affected, and a
    closed stream gives its slot back."""
    slots = WaitSlots(1)
    world = World(tmp_path, slots=slots)
    alice, bob = world.client("alice"), world.client("bob")
    task_id = world.task("alice", "test_count", n=3, step_ms=0)
    with alice.stream("GET", f"/tasks/{task_id}/events") as first:
        assert first.status_code == 200
        lines = first.iter_lines()
        assert "event: task" in next(lines) + next(lines)
        assert slots.full("alice")
        refused = alice.get("/events")
        assert refused.status_code == 429 and refused.headers["retry-after"] == "5"
        assert "TASKBROKER_MAX_WAITS_PER_USER" in refused.text
        with bob.stream("GET", "/events") as theirs:
            assert theirs.status_code == 200
    deadline = time.monotonic() + 10
    while slots.full("alice") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not slots.full("alice")
    with alice.stream("GET", "/events") as again:
        assert again.status_code == 200
