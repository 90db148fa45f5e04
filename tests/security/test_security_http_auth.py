"""The MCP server over streamable HTTP with real authentication, authorization and limits.

One `taskbroker serve` subprocess (distributed mode: a private redis-server, so the outage test
can stop it, and the session's PostgreSQL) accepts static tokens from a token file, HS256 JWTs
and RS256 JWTs from a JWKS file side by side.  No worker runs: started tasks stay queued.
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from taskbroker.mcp.tokens import add_token, jwt_user_id
from tests.conftest import LOG_DIR
from tests.security.conftest import AUDIENCE, ISSUER, Keys, new_rsa_key
from tests.support.procs import (
    Postgres,
    Proc,
    Redis,
    base_env,
    free_port,
    start_process,
    start_redis,
    taskbroker_argv,
    wait_for,
)

HAS_RESILIENCE = importlib.util.find_spec("taskbroker.plugins.resilience") is not None
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "0"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream",
               "Content-Type": "application/json"}


@dataclass
class Server:
    """The running server, its private Redis and the tokens handed out."""

    proc: Proc
    redis: Redis
    port: int
    keys: Keys
    tokens: dict[str, str]
    used: set[str] = field(default_factory=set)
    started: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The MCP endpoint."""
        return f"http://127.0.0.1:{self.port}/mcp"

    def token(self, name: str) -> str:
        """A static token by user name (remembered for the log check)."""
        self.used.add(self.tokens[name])
        return self.tokens[name]

    def jwt(self, kind: str, sub: str, **kw: Any) -> str:
        """A JWT of ``kind`` (hs256/rs256), remembered for the log check."""
        token = getattr(self.keys, kind)(sub, **kw)
        self.used.add(token)
        return token


@pytest.fixture(scope="module")
def server(postgres: Postgres, keys: Keys, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    """A `taskbroker serve` subprocess with every kind of bearer token enabled."""
    tmp = tmp_path_factory.mktemp("security-server")
    token_file = tmp / "tokens.json"
    tokens = {name: add_token(token_file, name, roles)
              for name, roles in [("sec-alice", []), ("sec-bob", []), ("sec-root", ["admin"]),
                                  ("sec-flood", []), ("sec-outage", [])]}
    started: list[str] = []
    port = free_port()
    redis = start_redis()
    try:
        env = base_env(
            TASKBROKER_REDIS_URL=redis.url,
            TASKBROKER_DATABASE_URL=postgres.url,
            TASKBROKER_TOKEN_FILE=str(token_file),
            TASKBROKER_JWT_SECRET=keys.secret,
            TASKBROKER_JWT_JWKS_FILE=str(keys.jwks_file),
            TASKBROKER_JWT_ISSUER=ISSUER,
            TASKBROKER_JWT_AUDIENCE=AUDIENCE,
            TASKBROKER_RATE_LIMITS="list_types: 4/hour; start: 100/minute",
            TASKBROKER_BROKER_TIMEOUT="1",
            TASKBROKER_LOG_LEVEL="DEBUG",
            TASKBROKER_BUILTIN_PLUGINS="true" if HAS_RESILIENCE else "false",
        )
        proc = start_process(taskbroker_argv("serve", "--port", str(port), "--no-worker"),
                             env=env, name="security-server", log_dir=LOG_DIR)
        try:
            wait_for(lambda: not proc.alive() or httpx.get(
                f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200,
                timeout=60, what="server /healthz")
            assert proc.alive(), proc.log()[-3000:]
            yield Server(proc, redis, port, keys, tokens, started=started)
        finally:
            proc.stop()
    finally:
        redis.stop()
        _revoke(postgres, started)


def _revoke(postgres: Postgres, task_ids: list[str]) -> None:
    """Mark the tasks this module queued revoked (no worker will ever run them)."""
    from sqlalchemy import create_engine

    from taskbroker.adapters.sql import SqlLedger

    engine = create_engine(postgres.url)
    try:
        ledger = SqlLedger(engine)
        for task_id in task_ids:
            ledger.cancel(task_id)
    finally:
        engine.dispose()


# --- MCP client helpers ---------------------------------------------------------------------


async def _session(url: str, token: str, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"},
                                  timeout=30) as http, \
            Client(streamable_http_client(url, http_client=http)) as client:
        return [await client.call_tool(name, args) for name, args in calls]


def session(server: Server, token: str, *calls: tuple[str, dict[str, Any]]) -> list[Any]:
    """Open one MCP session with ``token`` and make ``calls`` in it; return the results."""
    return anyio.run(_session, server.url, token, list(calls))


def call(server: Server, token: str, tool: str, **args: Any) -> Any:
    """One tool call in its own session."""
    return session(server, token, (tool, args))[0]


def ok(result: Any) -> dict[str, Any]:
    """The structured content of a successful call."""
    assert not result.is_error, result.content[0].text
    return result.structured_content


def error(result: Any) -> str:
    """The text of a tool error: it starts with its documented kind."""
    assert result.is_error, result.structured_content
    text = result.content[0].text
    assert re.match(r"(ValueError|PermissionError|RateLimitError|TaskNotFound|ConnectionError"
                    r"|InternalError): ", text), text
    return text


def start(server: Server, token: str, task_type: str = "test_parked",
          params: dict[str, Any] | None = None) -> str:
    """Start a task (default: one on a queue nobody consumes); return its id."""
    if task_type == "test_parked":
        params = {"path": "/nonexistent/never-runs"}
    task_id = ok(call(server, token, "start_background_task_tool", task_type=task_type,
                      params=params))["task_id"]
    server.started.append(task_id)
    return task_id


def post_initialize(server: Server, headers: dict[str, str] | None = None) -> httpx.Response:
    """A raw MCP initialize request."""
    return httpx.post(server.url, json=INIT, headers={**MCP_HEADERS, **(headers or {})},
                      timeout=10)


# --- authentication -------------------------------------------------------------------------


def test_no_token_is_401_with_protected_resource_metadata(server: Server) -> None:
    resp = post_initialize(server)
    assert resp.status_code == 401
    challenge = resp.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="invalid_token"' in challenge
    metadata_url = re.search(r'resource_metadata="([^"]+)"', challenge).group(1)
    assert metadata_url == (f"http://127.0.0.1:{server.port}"
                            "/.well-known/oauth-protected-resource/mcp")
    meta = httpx.get(metadata_url, timeout=10)
    assert meta.status_code == 200
    body = meta.json()
    assert body["resource"] == server.url
    assert body["authorization_servers"] and body["authorization_servers"][0].startswith(ISSUER)
    assert body["bearer_methods_supported"] == ["header"]


def test_health_endpoints_need_no_token(server: Server) -> None:
    assert httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=10).status_code == 200


def _bad_tokens(server: Server) -> dict[str, str]:
    keys, other_key = server.keys, new_rsa_key()
    now = int(time.time())
    return {
        "garbage": "tb_" + uuid.uuid4().hex,
        "static token with a typo": server.tokens["sec-alice"][:-1] + "x",
        "expired HS256": keys.hs256("mallory", exp=now - 3600, iat=now - 7200),
        "wrong audience": keys.hs256("mallory", aud="someone-else"),
        "no audience": keys.hs256("mallory", aud=None),
        "wrong issuer": keys.hs256("mallory", iss="https://evil.example"),
        "wrong HS256 secret": Keys("not-the-secret" * 3, keys.rsa_private,
                                   keys.jwks_file).hs256("mallory"),
        "expired RS256": keys.rs256("mallory", exp=now - 3600, iat=now - 7200),
        "RS256 signed by an unknown key": keys.rs256("mallory", key=other_key),
        "no expiry": keys.hs256("mallory", exp=None),
        "alg none": ".".join(t for t in keys.hs256("mallory").split(".")[:2]) + ".",
    }


def test_bad_tokens_are_401(server: Server) -> None:
    for what, token in _bad_tokens(server).items():
        server.used.add(token)
        resp = post_initialize(server, {"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401, what
        assert resp.headers["www-authenticate"].startswith("Bearer "), what


def _owner_of(server: Server, token: str, task_id: str) -> str:
    listed = ok(call(server, token, "list_active_tasks_tool"))
    owners = {t["task_id"]: t["owner"] for t in listed["tasks"]}
    return owners[task_id]


def test_static_token_session(server: Server) -> None:
    token = server.token("sec-alice")
    task_id = start(server, token)
    assert _owner_of(server, token, task_id) == "sec-alice"


def test_hs256_jwt_session(server: Server) -> None:
    sub = f"hs-{uuid.uuid4().hex[:6]}"
    token = server.jwt("hs256", sub, roles="reader writer")
    task_id = start(server, token)
    assert _owner_of(server, token, task_id) == jwt_user_id(ISSUER, sub)
    # a non-admin role string grants no admin rights
    assert error(call(server, token, "start_background_task_tool",
                      task_type="test_admin_only")).startswith("PermissionError:")


def test_hs256_jwt_with_an_audience_list(server: Server) -> None:
    token = server.jwt("hs256", "aud-list-user", aud=["other-api", AUDIENCE])
    ok(call(server, token, "list_active_tasks_tool"))


def test_rs256_jwt_session_with_admin_role(server: Server) -> None:
    sub = f"rs-{uuid.uuid4().hex[:6]}"
    token = server.jwt("rs256", sub, roles=["admin"])
    task_id = start(server, token, "test_admin_only")
    status = ok(call(server, token, "get_task_status_tool", task_id=task_id))
    assert status["status"] == "pending" and status["task_type"] == "test_admin_only"


# --- authorization --------------------------------------------------------------------------


def test_non_admin_is_denied_an_admin_task_and_admin_is_allowed(server: Server) -> None:
    text = error(call(server, server.token("sec-alice"), "start_background_task_tool",
                      task_type="test_admin_only"))
    assert text == ("PermissionError: permission denied: task type 'test_admin_only' requires "
                    "the 'admin' role")
    start(server, server.token("sec-root"), "test_admin_only")


@pytest.mark.skipif(not HAS_RESILIENCE, reason="taskbroker.plugins.resilience not available")
def test_crisis_activation_needs_admin_and_binds_the_approver(
    server: Server, postgres: Postgres
) -> None:
    from sqlalchemy import create_engine

    from taskbroker.adapters.sql import SqlLedger

    crisis = "resilience_crisis_activation"
    params = {"severity": "minor", "reason": "security test"}
    denied = error(call(server, server.token("sec-alice"), "start_background_task_tool",
                        task_type=crisis, params=params))
    assert denied.startswith("PermissionError: ") and "'admin' role" in denied
    root = server.token("sec-root")
    forged = error(call(server, root, "start_background_task_tool", task_type=crisis,
                        params={**params, "approved_by": "somebody-else"}))
    assert forged.startswith("PermissionError: ") and "approved_by" in forged
    task_id = start(server, root, crisis, params)
    same = start(server, root, crisis, {**params, "approved_by": "sec-root"})
    engine = create_engine(postgres.url)
    try:
        ledger = SqlLedger(engine)
        for tid in (task_id, same):
            record = ledger.get(tid)
            assert record is not None and record.owner == "sec-root"
            assert record.params["approved_by"] == "sec-root"  # the authenticated admin
    finally:
        engine.dispose()


def test_users_see_only_their_own_tasks(server: Server) -> None:
    alice, bob, root = server.token("sec-alice"), server.token("sec-bob"), server.token("sec-root")
    task_id = start(server, alice)
    unknown = str(uuid.uuid4())
    status_b, cancel_b, list_b, status_u, cancel_u = session(
        server, bob,
        ("get_task_status_tool", {"task_id": task_id}),
        ("cancel_task_tool", {"task_id": task_id}),
        ("list_active_tasks_tool", {}),
        ("get_task_status_tool", {"task_id": unknown}),
        ("cancel_task_tool", {"task_id": unknown}),
    )
    # exactly what an unknown id gets: no existence oracle
    assert error(status_b) == f"TaskNotFound: task_id {task_id!r}: no such task"
    assert error(status_b).replace(task_id, unknown) == error(status_u)
    assert error(cancel_b).replace(task_id, unknown) == error(cancel_u)
    assert task_id not in {t["task_id"] for t in ok(list_b)["tasks"]}
    assert all(t["owner"] == "sec-bob" for t in ok(list_b)["tasks"])
    # the owner and an admin see it; bob's cancel changed nothing
    assert ok(call(server, alice, "get_task_status_tool", task_id=task_id))["status"] == "pending"
    admin_list = ok(call(server, root, "list_active_tasks_tool"))
    assert task_id in {t["task_id"] for t in admin_list["tasks"]}
    assert ok(call(server, root, "cancel_task_tool", task_id=task_id))["changed"] is True


# --- rate limits and error texts ------------------------------------------------------------


def test_rate_limit_denial_says_which_limit_and_when(server: Server) -> None:
    results = session(server, server.token("sec-flood"), *[("list_task_types_tool", {})] * 5)
    for r in results[:4]:
        assert not r.is_error
    text = error(results[4])
    m = re.fullmatch(r"RateLimitError: rate limit exceeded for list_types: 4 per 1 hour "
                     r"\(limit 4 per 1 hour; retry_after=(\d+\.\d) s\)", text)
    assert m, text
    assert 0 < float(m.group(1)) <= 3600


def test_error_kinds_are_distinct_and_carry_no_traceback(server: Server) -> None:
    alice = server.token("sec-alice")
    texts = {
        "invalid": error(call(server, alice, "start_background_task_tool",
                              task_type="test_count", params={"n": 0})),
        "denied": error(call(server, alice, "start_background_task_tool",
                             task_type="test_admin_only")),
        "not_found": error(call(server, alice, "get_task_status_tool",
                                task_id=str(uuid.uuid4()))),
    }
    flood = session(server, server.token("sec-flood"), ("list_task_types_tool", {}))
    texts["rate_limited"] = error(flood[0])  # flood already used its 4/hour above
    prefixes = {kind: text.split(":", 1)[0] for kind, text in texts.items()}
    assert prefixes == {"invalid": "ValueError", "denied": "PermissionError",
                        "not_found": "TaskNotFound", "rate_limited": "RateLimitError"}
    for text in texts.values():
        assert "Traceback" not in text and 'File "' not in text


def test_redis_outage_is_a_connection_error_not_a_free_pass(server: Server) -> None:
    token = server.token("sec-outage")
    task_id = start(server, token)
    server.redis.stop()
    try:
        status, begin = session(server, token, ("get_task_status_tool", {"task_id": task_id}),
                                ("start_background_task_tool",
                                 {"task_type": "test_parked", "params": {"path": "/x"}}))
        for result in (status, begin):
            text = error(result)
            assert text.startswith("ConnectionError: rate limiter unavailable"), text
            assert "Traceback" not in text and "redis://" not in text
    finally:
        server.redis.restart()
    wait_for(lambda: not call(server, token, "get_task_status_tool", task_id=task_id).is_error,
             timeout=30, what="service back after Redis restart")


# --- secrets in logs ------------------------------------------------------------------------


def test_no_token_appears_in_the_server_log(server: Server) -> None:
    # make sure every kind of token went through the server at least once
    ok(call(server, server.token("sec-root"), "list_active_tasks_tool"))
    ok(call(server, server.jwt("hs256", "log-hs"), "list_active_tasks_tool"))
    ok(call(server, server.jwt("rs256", "log-rs"), "list_active_tasks_tool"))
    for token in _bad_tokens(server).values():
        server.used.add(token)
        post_initialize(server, {"Authorization": f"Bearer {token}"})
    time.sleep(0.5)  # let the server flush its last lines (not an assertion)
    log = server.proc.log()
    lines = log.splitlines()
    assert len(lines) > 3, log  # DEBUG logging is on: the check below is not vacuous
    assert any(json.loads(line).get("event") for line in lines if line.startswith("{"))
    assert "rejected JWT" in log  # verifier failures are logged (by reason only)
    leaked = [t for t in server.used | set(server.tokens.values()) if t in log]
    assert not leaked, f"{len(leaked)} token(s) found in the server log"
    signatures = [t.rsplit(".", 1)[-1] for t in server.used if t.count(".") == 2]
    assert not [s for s in signatures if len(s) > 10 and s in log]
    assert "Bearer " not in log
