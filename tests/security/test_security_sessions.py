"""Sessions, Host checks, the ops port, auth-off refusal and header smuggling, against real
`taskbroker serve` processes (embedded mode, no worker) and real SDK clients.

The flood: one user opens thousands of MCP sessions and never closes them; the server's RSS
stays bounded, the flooder holds at most its per-user cap, other users are served, and SIGTERM
still stops the server at once.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from taskbroker.mcp.tokens import add_token
from tests.conftest import LOG_DIR
from tests.support.mcp_client import http_client, tool_text
from tests.support.procs import Proc, base_env, free_port, start_process, taskbroker_argv, wait_for

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "flood", "version": "0"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream",
               "Content-Type": "application/json"}
USERS = ("alice", "bob", "carol", "dave", "mallory")


@dataclass
class Served:
    """A running server, its tokens and ports."""

    proc: Proc
    port: int
    tokens: dict[str, str]
    ops_port: int | None = None

    @property
    def url(self) -> str:
        """The MCP endpoint."""
        return f"http://127.0.0.1:{self.port}/mcp"

    def rss_mb(self) -> float:
        """The server process's resident memory (MB)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")


def _serve(tmp: Path, name: str, *args: str, **env: str) -> Served:
    token_file = tmp / "tokens.json"
    tokens = {u: add_token(token_file, u, ["admin"] if u == "alice" else []) for u in USERS}
    port = free_port()
    ops_port = int(env["TASKBROKER_OPS_PORT"]) if "TASKBROKER_OPS_PORT" in env else None
    proc = start_process(
        taskbroker_argv("serve", "--port", str(port), "--no-worker", *args),
        env=base_env(TASKBROKER_DATA_DIR=str(tmp / "data"), TASKBROKER_TOKEN_FILE=str(token_file),
                     **env),
        name=name, log_dir=LOG_DIR)
    health = f"http://127.0.0.1:{ops_port or port}/healthz"
    try:
        wait_for(lambda: not proc.alive() or httpx.get(health, timeout=2).status_code == 200,
                 timeout=60, what=f"{name} /healthz")
    except BaseException:
        proc.stop()
        raise
    assert proc.alive(), proc.log()[-3000:]
    return Served(proc, port, tokens, ops_port)


@pytest.fixture
def flood_server(tmp_path: Path) -> Iterator[Served]:
    """Sessions capped at 8 per user and 24 in all; no creation rate limit to speak of."""
    served = _serve(tmp_path, "sessions-flood", TASKBROKER_SESSIONS_PER_USER="8",
                    TASKBROKER_MAX_SESSIONS="24", TASKBROKER_SESSION_RATE="1000000/minute")
    try:
        yield served
    finally:
        served.proc.stop()


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A low session creation rate, a low start rate limit and an ops port."""
    served = _serve(tmp_path_factory.mktemp("strict"), "sessions-strict",
                    TASKBROKER_SESSION_RATE="5/minute", TASKBROKER_OPS_PORT=str(free_port()),
                    TASKBROKER_RATE_LIMITS="start: 4/minute; status: 1000/minute; "
                                           "list: 1000/minute; list_types: 1000/minute")
    try:
        yield served
    finally:
        served.proc.stop()


def _open(http: httpx.Client, url: str, token: str) -> str:
    """Initialize one session (never closed); its id."""
    r = http.post(url, json=INIT, headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"})
    assert r.status_code == 200, (r.status_code, r.text)
    return r.headers["mcp-session-id"]


def _alive(http: httpx.Client, url: str, token: str, session_id: str) -> bool:
    """True when the session still answers (a ping), False when it is gone (404)."""
    r = http.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "ping"},
                  headers={**MCP_HEADERS, "Authorization": f"Bearer {token}",
                           "mcp-session-id": session_id, "mcp-protocol-version": "2025-06-18"})
    assert r.status_code in (200, 404), (r.status_code, r.text)
    return r.status_code == 200


def _tool_call(url: str, token: str, tool: str, **args: Any) -> Any:
    async def body() -> Any:
        async with http_client(url, token) as client:
            return await client.call_tool(tool, args)
    return anyio.run(body)


def test_one_users_session_flood_leaves_everyone_else_served(flood_server: Served) -> None:
    s = flood_server
    with httpx.Client(timeout=30) as http:
        # the others hold a few sessions each before the flood
        kept = {u: [_open(http, s.url, s.tokens[u]) for _ in range(3)]
                for u in ("alice", "bob", "carol")}
        rss_before = s.rss_mb()
        flood = [_open(http, s.url, s.tokens["mallory"]) for _ in range(2000)]
        rss_after = s.rss_mb()
        # the flooder holds its last 8 sessions; every earlier one was closed
        assert [_alive(http, s.url, s.tokens["mallory"], sid) for sid in flood[-8:]] == [True] * 8
        assert not any(_alive(http, s.url, s.tokens["mallory"], sid) for sid in flood[:50])
        # the others' sessions survived the flood
        for user, ids in kept.items():
            assert all(_alive(http, s.url, s.tokens[user], sid) for sid in ids), user
        # at the global cap (24), a newcomer evicts from the heaviest user, never fails
        dave = [_open(http, s.url, s.tokens["dave"]) for _ in range(8)]
        assert all(_alive(http, s.url, s.tokens["dave"], sid) for sid in dave)
        alive = {u: sum(_alive(http, s.url, s.tokens[u], sid) for sid in ids)
                 for u, ids in {**kept, "dave": dave, "mallory": flood[-8:]}.items()}
        assert sum(alive.values()) <= 24
        assert alive["alice"] == alive["bob"] == alive["carol"] == 3 and alive["dave"] == 8
    # a real client of another user works normally
    listed = _tool_call(s.url, s.tokens["bob"], "list_active_tasks_tool")
    assert not listed.is_error, tool_text(listed)
    # memory per flood session is bounded: 2000 sessions opened cost (far) less than 40 MB
    print(f"RSS before {rss_before:.1f} MB, after 2000 flood sessions {rss_after:.1f} MB")
    assert rss_after - rss_before < 40, (rss_before, rss_after)
    log = s.proc.log()
    assert "closed a least recently used session (per-user cap)" in log
    assert "closed a least recently used session (global cap)" in log
    assert s.tokens["mallory"] not in log


def test_sigterm_under_a_session_flood_stops_at_once(flood_server: Served) -> None:
    s = flood_server
    with httpx.Client(timeout=30) as http:
        for user in ("alice", "bob", "carol", "mallory"):
            for _ in range(6):
                _open(http, s.url, s.tokens[user])
        # two clients hold standing GET streams (what kept the old server from exiting)
        streams = []
        for user in ("alice", "bob"):
            sid = _open(http, s.url, s.tokens[user])
            req = http.build_request("GET", s.url, headers={
                "Accept": "text/event-stream", "Authorization": f"Bearer {s.tokens[user]}",
                "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18"})
            streams.append(http.send(req, stream=True))
        assert all(r.status_code == 200 for r in streams)
        os.kill(s.proc.pid, signal.SIGTERM)
        # the default grace is 5 s; the test's own bound is generous (a 2-core CI machine)
        code = s.proc.popen.wait(timeout=30)
        for r in streams:
            r.close()
    assert code == 0, s.proc.log()[-3000:]


def test_session_creation_rate_is_per_user(strict_server: Served) -> None:
    s = strict_server
    with httpx.Client(timeout=30) as http:
        codes = []
        for _ in range(7):
            r = http.post(s.url, json=INIT, headers={
                **MCP_HEADERS, "Authorization": f"Bearer {s.tokens['carol']}"})
            codes.append(r.status_code)
        assert codes == [200] * 5 + [429] * 2
        assert int(r.headers["retry-after"]) >= 1
        assert "RateLimitError: too many new sessions" in r.text
        # another user is not affected
        assert _open(http, s.url, s.tokens["dave"])


@pytest.mark.parametrize("path", ["/mcp", "/healthz", "/readyz", "/metrics"])
def test_every_endpoint_checks_the_host(strict_server: Served, path: str) -> None:
    s = strict_server
    port = s.port if path == "/mcp" else s.ops_port
    url = f"http://127.0.0.1:{port}{path}"
    for host in ("evil.example", f"evil.example:{port}", "localhost.evil.example"):
        r = httpx.get(url, headers={"Host": host}, timeout=10)
        assert r.status_code == 421, (host, r.status_code, r.text)
    if path != "/mcp":
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"10.1.2.3:{port}"):
            assert httpx.get(url, headers={"Host": host}, timeout=10).status_code == 200, host


def test_the_ops_port_serves_health_and_metrics_and_the_mcp_port_does_not(
    strict_server: Served,
) -> None:
    s = strict_server
    ops = httpx.get(f"http://127.0.0.1:{s.ops_port}/metrics", timeout=10)
    assert ops.status_code == 200 and "taskbroker_" in ops.text
    assert httpx.get(f"http://127.0.0.1:{s.ops_port}/readyz", timeout=10).json()["status"] == "ok"
    for path in ("/metrics", "/readyz", "/healthz"):
        assert httpx.get(f"http://127.0.0.1:{s.port}{path}", timeout=10).status_code == 404


def test_two_authorization_headers_are_refused(strict_server: Served) -> None:
    s = strict_server
    headers = [("Authorization", f"Bearer {s.tokens['bob']}"),
               ("Authorization", f"Bearer {s.tokens['alice']}"),
               ("Accept", MCP_HEADERS["Accept"]), ("Content-Type", "application/json")]
    r = httpx.post(s.url, json=INIT, headers=headers, timeout=10)
    assert r.status_code == 400 and "more than one Authorization header" in r.text


def test_argument_errors_carry_their_kind_and_types_are_strict(strict_server: Served) -> None:
    s = strict_server

    async def body(client: Client) -> list[str]:
        calls = [
            ("start_background_task_tool", {"task_type": "test_count", "priority": 10}),
            ("start_background_task_tool", {"task_type": "test_count", "priority": True}),
            ("start_background_task_tool", {"task_type": "test_count", "colour": "red"}),
            ("test_count", {"n": True}),
        ]
        texts = []
        for tool, args in calls:
            r = await client.call_tool(tool, args)
            assert r.is_error, (tool, args)
            texts.append(tool_text(r))
        # the rate limit (start: 4/minute) counted those four invalid calls: the fifth,
        # invalid too, is refused for the limit
        r = await client.call_tool("start_background_task_tool",
                                   {"task_type": "test_count", "priority": "high"})
        texts.append(tool_text(r))
        return texts

    async def run() -> list[str]:
        async with http_client(s.url, s.tokens["bob"]) as client:
            return await body(client)

    texts = anyio.run(run)
    assert texts[0] == "ValueError: priority: expected an integer 0..9, got 10"
    assert texts[1] == "ValueError: priority: expected an integer 0..9, got True"
    assert texts[2] == ("ValueError: colour: unexpected argument; accepted: task_type, params, "
                        "priority, idempotency_key")
    assert texts[3].startswith("ValueError: invalid params for test_count: params.n: Input "
                               "should be a valid integer")
    assert texts[4].startswith("RateLimitError: rate limit exceeded for start")
    assert not any("pydantic" in t or "Error executing tool" in t for t in texts)


def _serve_unauthenticated(tmp: Path, host: str, **env: str) -> tuple[Proc, int]:
    port = free_port()
    return start_process(
        taskbroker_argv("serve", "--host", host, "--port", str(port), "--no-worker"),
        env=base_env(TASKBROKER_DATA_DIR=str(tmp), TASKBROKER_HTTP_AUTH="none", **env),
        name="auth-off", log_dir=LOG_DIR), port


def test_auth_off_is_refused_on_a_network_bind(tmp_path: Path) -> None:
    proc, _ = _serve_unauthenticated(tmp_path, "0.0.0.0")
    try:
        code = proc.popen.wait(timeout=60)
    finally:
        proc.stop()
    assert code != 0
    log = proc.log()
    assert "refusing to serve without authentication on '0.0.0.0'" in log
    assert "TASKBROKER_INSECURE_UNAUTHENTICATED_NETWORK=true" in log


@pytest.mark.parametrize(("host", "env"), [
    ("127.0.0.1", {}),
    ("0.0.0.0", {"TASKBROKER_INSECURE_UNAUTHENTICATED_NETWORK": "true"}),
])
def test_auth_off_starts_with_a_warning(tmp_path: Path, host: str, env: dict[str, str]) -> None:
    proc, port = _serve_unauthenticated(tmp_path, host, **env)
    try:
        wait_for(lambda: not proc.alive() or httpx.get(
            f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200,
            timeout=60, what="auth-off server /healthz")
        assert proc.alive(), proc.log()[-2000:]
    finally:
        proc.stop()
    assert f"HTTP authentication is OFF (TASKBROKER_HTTP_AUTH=none): every caller on {host}" \
        in proc.log()
