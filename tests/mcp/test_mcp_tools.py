"""The MCP tools through a real MCP client session, over stdio and streamable HTTP."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import anyio
import pytest
from mcp import Client

from tests.conftest import LOG_DIR
from tests.support.mcp_client import http_client, run_with, stdio_client, tool_text
from tests.support.procs import Proc, free_port, start_process, taskbroker_argv, wait_for

pytestmark = pytest.mark.usefixtures("worker")

SEED_START_FIELDS = {"task_id", "task_type", "status", "estimated_duration", "queued_at", "message"}
SEED_STATUS_FIELDS = {"task_id", "status", "progress", "result", "error", "started_at",
                      "completed_at"}


async def poll_until_done(c: Client, task_id: str) -> dict:
    """Poll get_task_status_tool until a terminal status."""
    with anyio.fail_after(60):
        while True:
            r = await c.call_tool("get_task_status_tool", {"task_id": task_id})
            assert not r.is_error, tool_text(r)
            if r.structured_content["status"] in ("success", "failure", "revoked"):
                return r.structured_content
            await anyio.sleep(0.05)


async def contract_walk(c: Client) -> None:
    """Exercise every tool and its error paths; assertions inside."""
    tools = {t.name: t for t in (await c.list_tools()).tools}
    assert {"start_background_task_tool", "get_task_status_tool", "cancel_task_tool",
            "list_active_tasks_tool", "list_task_types_tool"} <= set(tools)
    assert tools["get_task_status_tool"].annotations.read_only_hint is True
    assert tools["list_active_tasks_tool"].annotations.read_only_hint is True
    assert tools["cancel_task_tool"].annotations.destructive_hint is True
    assert tools["start_background_task_tool"].output_schema is not None

    types = await c.call_tool("list_task_types_tool", {})
    described = {t["name"]: t for t in types.structured_content["result"]}
    assert described["test_count"]["params_schema"]["properties"]["n"]["maximum"] == 1000
    assert described["test_admin_only"]["required_role"] == "admin"
    assert described["test_count"]["plugin"] == "tests.support.sample_plugin"

    started = await c.call_tool("start_background_task_tool",
                                {"task_type": "test_count", "params": {"n": 4, "step_ms": 10}})
    assert not started.is_error, tool_text(started)
    receipt = started.structured_content
    assert set(receipt) >= SEED_START_FIELDS and receipt["status"] == "pending"
    final = await poll_until_done(c, receipt["task_id"])
    assert set(final) >= SEED_STATUS_FIELDS
    assert final["status"] == "success" and final["result"] == {"sum": 10, "steps": 4}
    assert final["progress"] == 100 and final["started_at"] and final["completed_at"]
    assert final["message"] == "finished: success"  # not its last progress text

    # idempotency over a real session: same key + same request -> the original task with its
    # current status; same key + another request -> a ValueError naming the key
    key = f"walk-{uuid.uuid4().hex[:8]}"
    request = {"task_type": "test_count", "params": {"n": 2, "step_ms": 0},
               "idempotency_key": key}
    first = (await c.call_tool("start_background_task_tool", request)).structured_content
    done = await poll_until_done(c, first["task_id"])
    assert done["status"] == "success"
    replay = (await c.call_tool("start_background_task_tool", request)).structured_content
    assert (replay["task_id"], replay["status"], replay["deduplicated"]) == (
        first["task_id"], "success", True)
    assert replay["poll_interval_seconds"] > 0
    other = await c.call_tool("start_background_task_tool",
                              {**request, "params": {"n": 3, "step_ms": 0}})
    assert other.is_error and tool_text(other).startswith(
        f"ValueError: idempotency_key: {key!r} was already used for a different request")

    failed = await c.call_tool("start_background_task_tool",
                               {"task_type": "test_fail", "params": {"message": "nope"}})
    bad = await poll_until_done(c, failed.structured_content["task_id"])
    assert bad["status"] == "failure"
    retried = await c.call_tool("retry_task_tool", {"task_id": bad["task_id"]})
    assert not retried.is_error, tool_text(retried)
    assert retried.structured_content["retry_of"] == bad["task_id"]
    again = await poll_until_done(c, retried.structured_content["task_id"])
    assert (again["status"], again["retry_of"]) == ("failure", bad["task_id"])
    assert re.fullmatch(r"RuntimeError: nope \(reference [0-9a-f]{12}\)", bad["error"])

    r = await c.call_tool("start_background_task_tool",
                          {"task_type": "test_count", "params": {"n": "many"}})
    assert r.is_error
    assert "ValueError: invalid params for test_count: params.n: Input should be a valid " \
        "integer" in tool_text(r)
    assert "Accepted: n (integer >=1 <=1000, default 5)" in tool_text(r)
    r = await c.call_tool("start_background_task_tool",
                          {"task_type": "test_count", "params": '{"n": 2, "step_ms": 0}'})
    assert not r.is_error, tool_text(r)  # params as a JSON string, as some clients send
    as_string = await poll_until_done(c, r.structured_content["task_id"])
    assert as_string["result"] == {"sum": 3, "steps": 2}
    r = await c.call_tool("start_background_task_tool",
                          {"task_type": "test_count", "params": "[1, 2]"})
    assert r.is_error and "params" in tool_text(r) and "Traceback" not in tool_text(r)
    r = await c.call_tool("start_background_task_tool", {"task_type": "nope"})
    assert r.is_error and "unknown task type 'nope'; valid task types:" in tool_text(r)
    assert "test_count" in tool_text(r)
    r = await c.call_tool("get_task_status_tool",
                          {"task_id": "11111111-2222-3333-4444-555555555555"})
    assert r.is_error and "TaskNotFound: task_id '11111111-" in tool_text(r)
    r = await c.call_tool("get_task_status_tool", {"task_id": "../../etc/passwd"})
    assert r.is_error and "ValueError: task_id: expected a task id" in tool_text(r)
    assert "Traceback" not in tool_text(r)

    sleeper = await c.call_tool("start_background_task_tool",
                                {"task_type": "test_sleep", "params": {"seconds": 60}})
    sleeper_id = sleeper.structured_content["task_id"]
    with anyio.fail_after(60):
        while True:
            listing = await c.call_tool("list_active_tasks_tool", {"task_type": "test_sleep"})
            running = [t for t in listing.structured_content["tasks"]
                       if t["task_id"] == sleeper_id and t["status"] == "started"]
            if running:
                break
            await anyio.sleep(0.05)
    assert {"task_id", "task_name", "task_type", "status", "started_at"} <= set(running[0])
    assert listing.structured_content["total_active"] >= 1 and listing.structured_content[
        "queried_at"]
    cancelled = await c.call_tool("cancel_task_tool", {"task_id": sleeper_id})
    assert cancelled.structured_content["status"] == "revoked"
    assert cancelled.structured_content["canceled_at"]
    again = await c.call_tool("cancel_task_tool", {"task_id": sleeper_id})
    assert again.structured_content["changed"] is False


def test_tools_over_stdio(dist_env: dict[str, str]) -> None:
    run_with(stdio_client(dist_env), contract_walk)


@pytest.fixture(scope="module")
def http_server(dist_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[str, str]]:
    """`taskbroker serve` over HTTP with a static token file; yields (url, token)."""
    from taskbroker.mcp.tokens import add_token

    tokens = tmp_path_factory.mktemp("tokens") / "tokens.json"
    token = add_token(tokens, "http-user", [])
    port = free_port()
    env = dict(dist_env, TASKBROKER_TOKEN_FILE=str(tokens))
    proc: Proc = start_process(taskbroker_argv("serve", "--port", str(port), "--no-worker"),
                               env=env, name="server", log_dir=LOG_DIR)
    try:
        import httpx

        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200,
                 timeout=60, what="server up")
        yield f"http://127.0.0.1:{port}/mcp", token
    finally:
        proc.stop()
        assert token not in proc.log(), "the bearer token was written to the server log"


def test_tools_over_streamable_http(http_server: tuple[str, str]) -> None:
    url, token = http_server
    run_with(http_client(url, token), contract_walk)


def test_http_requires_a_token(http_server: tuple[str, str]) -> None:
    import httpx

    url, _ = http_server
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                   headers={"Accept": "application/json, text/event-stream"})
    assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"]
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                   headers={"Authorization": "Bearer wrong",
                            "Accept": "application/json, text/event-stream"})
    assert r.status_code == 401


def test_health_and_readiness(http_server: tuple[str, str]) -> None:
    import httpx

    base = http_server[0].removesuffix("/mcp")
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"broker": "ok", "database": "ok"}
