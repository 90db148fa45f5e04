"""Waiting for a task over MCP, with the official SDK client and real servers: typed task tools
(result in the same call, or the task id past the wait), wait_for_task_tool, the tasks
extension (handle, tasks/get, tasks/cancel, tasks/update), progress and logging
notifications, the task resource, and what is (not) advertised."""

from __future__ import annotations

import json
import re
import subprocess
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.conftest import LOG_DIR
from tests.support.mcp_client import run_with, stdio_client, tool_text
from tests.support.procs import (
    ROOT,
    serving_http,
)
from tests.support.tasks_client import (
    TASKS,
    TasksClient,
    cancel_task,
    get_task,
    listen_request,
    update_task,
)

pytestmark = pytest.mark.usefixtures("worker")

WAIT = 3  # the server's TASKBROKER_TOOL_WAIT_SECONDS here


@pytest.fixture(scope="module")
def server(dist_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[dict[str, str]]:
    """`taskbroker serve` over HTTP (no worker of its own: the session's consumes); yields the
    URL and a token per user."""
    from taskbroker.mcp.tokens import add_token

    tokens = tmp_path_factory.mktemp("tokens") / "tokens.json"
    users = {name: add_token(tokens, f"wait-{name}", []) for name in ("alice", "bob")}
    env = dict(dist_env, TASKBROKER_TOKEN_FILE=str(tokens), TASKBROKER_TOOL_WAIT_SECONDS=str(WAIT),
               TASKBROKER_WATCH_INTERVAL="0.1")
    with serving_http(env, name="wait-server", log_dir=LOG_DIR) as port:
        yield {"url": f"http://127.0.0.1:{port}/mcp", **users}


def with_client(server: dict[str, str], user: str, body: Callable[[Client], Awaitable[Any]],
                **client_args: Any) -> Any:
    """Run ``body`` in an SDK client session of ``user`` (extra Client fields allowed)."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    async def main() -> Any:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {server[user]}"},
                                  timeout=60)
        async with Client(streamable_http_client(server["url"], http_client=http),
                          **client_args) as c:
            return await body(c)

    return anyio.run(main)


def test_a_typed_tool_returns_its_result_and_reports_progress(server: dict[str, str]) -> None:
    progress: list[tuple[float, str | None]] = []

    async def body(c: Client) -> None:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert tools["test_count"].input_schema["properties"]["n"]["maximum"] == 1000
        assert "background task" in (tools["test_count"].description or "")

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append((done, message))

        r = await c.call_tool("test_count", {"n": 4, "step_ms": 150},
                              progress_callback=on_progress)
        assert not r.is_error, tool_text(r)
        assert r.structured_content == {"sum": 10, "steps": 4}
        assert json.loads(tool_text(r)) == {"sum": 10, "steps": 4}  # compact text, same data

    with_client(server, "alice", body)
    values = [p for p, _ in progress]
    assert values == sorted(values) and values[-1] == 100, progress
    assert any(m == "step 2/4" for _, m in progress), progress


def test_a_typed_tool_past_its_wait_answers_the_task_id_and_the_wait_tool_finishes_it(
    server: dict[str, str],
) -> None:
    progress: list[float] = []

    async def body(c: Client) -> dict[str, Any]:
        first = await c.call_tool("test_sleep", {"seconds": WAIT + 3})
        assert not first.is_error, tool_text(first)
        pending = first.structured_content
        assert pending["status"] == "started" and "wait_for_task_tool" in pending["next"]

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append(done)

        done = await c.call_tool("wait_for_task_tool",
                                 {"task_id": pending["task_id"], "timeout_seconds": 30},
                                 progress_callback=on_progress)
        assert not done.is_error, tool_text(done)
        return done.structured_content

    final = with_client(server, "alice", body)
    assert final["status"] == "success" and final["result"]["slept"] == WAIT + 3
    assert progress and progress[-1] == 100


def test_the_wait_tool_returns_at_its_timeout_with_the_current_status(
    server: dict[str, str],
) -> None:
    async def body(c: Client) -> tuple[dict[str, Any], float]:
        started = await c.call_tool("start_background_task_tool",
                                    {"task_type": "test_sleep", "params": {"seconds": 8}})
        task_id = started.structured_content["task_id"]
        began = anyio.current_time()
        waited = await c.call_tool("wait_for_task_tool",
                                   {"task_id": task_id, "timeout_seconds": 1})
        took = anyio.current_time() - began
        await c.call_tool("cancel_task_tool", {"task_id": task_id})
        return waited.structured_content, took

    status, took = with_client(server, "alice", body)
    assert status["status"] in ("pending", "started") and took < 8  # a give-up bound


def test_wait_tool_validates_its_arguments(server: dict[str, str]) -> None:
    async def body(c: Client) -> list[str]:
        texts = []
        for args in ({"task_id": "nope nope"}, {"task_id": "a-1", "timeout_seconds": 500}):
            r = await c.call_tool("wait_for_task_tool", args)
            assert r.is_error
            texts.append(tool_text(r))
        return texts

    bad_id, too_long = with_client(server, "alice", body)
    assert bad_id.startswith("ValueError: task_id")
    assert "timeout_seconds" in too_long


# --- the tasks extension ------------------------------------------------------------------


def test_the_tasks_extension_runs_a_task_to_completion(server: dict[str, str]) -> None:
    ext = TasksClient()

    async def body(c: Client) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        caps = c.session.server_capabilities
        assert TASKS in (caps.extensions or {})
        # the raw handle, and a tasks/get right after it (the record is durable)
        handle = await c.session.call_tool("test_count", {"n": 3, "step_ms": 100},
                                           allow_claimed=True)
        first = await get_task(c.session, handle.task_id)
        resolved = await c.call_tool("test_count", {"n": 5, "step_ms": 0})
        return handle, first, resolved.model_dump(by_alias=True, mode="json")

    handle, first, resolved = with_client(server, "alice", body, extensions=[ext])
    assert handle.result_type == "task" and re.fullmatch(r"[0-9a-f-]{36}", handle.task_id)
    assert handle.status == "working" and handle.poll_interval_ms == 2000
    assert handle.ttl_ms == 30 * 86_400_000
    assert first["taskId"] == handle.task_id and first["status"] in ("working", "completed")
    assert first["resultType"] == "complete"
    assert resolved["structuredContent"] == {"sum": 15, "steps": 5}
    assert resolved.get("isError") in (None, False)
    assert ext.polls >= 1 and len(ext.handles) == 1


def test_a_task_handle_costs_no_status_call(dist_env: dict[str, str], tmp_path: Path) -> None:
    """A task-augmented call answers its handle from the start itself: it spends none of the
    caller's status limit, so a caller at that limit still gets the handle of every task it
    starts (before, the start went through and the status read after it was refused: the
    client got an error and never learned the id of the task it had started)."""
    env = dict(dist_env, TASKBROKER_RATE_LIMITS="status: 1/minute")
    params = {"path": str(tmp_path / "never")}

    async def body(c: Client) -> tuple[list[Any], list[Any]]:
        handles = [await c.session.call_tool("test_parked", dict(params), allow_claimed=True)
                   for _ in range(3)]
        listed = await c.call_tool("list_active_tasks_tool", {})
        return handles, listed.structured_content["tasks"]

    handles, active = run_with(stdio_client(env, extensions=[TasksClient()]), body)
    kinds = ["task" if getattr(h, "task_id", None) else tool_text(h) for h in handles]
    assert kinds == ["task"] * 3, kinds
    assert all(h.status == "working" for h in handles)
    ids = [h.task_id for h in handles]
    assert len(set(ids)) == 3
    assert {t["task_id"] for t in active} >= set(ids)


def test_a_typed_tool_answers_the_id_of_its_task_when_the_status_read_is_refused(
        dist_env: dict[str, str], tmp_path: Path) -> None:
    """A typed tool reads its task's status once its wait ends; when that read is refused
    (here the caller's status limit), the task was started all the same: the answer is its id
    and how to wait for it, not an error that loses the id."""
    env = dict(dist_env, TASKBROKER_RATE_LIMITS="status: 1/minute",
               TASKBROKER_TOOL_WAIT_SECONDS="0.2")
    params = {"path": str(tmp_path / "never")}

    async def body(c: Client) -> tuple[list[Any], list[Any]]:
        answers = [await c.call_tool("test_parked", dict(params)) for _ in range(3)]
        listed = await c.call_tool("list_active_tasks_tool", {})
        return answers, listed.structured_content["tasks"]

    answers, active = run_with(stdio_client(env), body)
    assert [a.is_error for a in answers] == [False] * 3, [tool_text(a) for a in answers]
    ids = [a.structured_content["task_id"] for a in answers]
    assert len(set(ids)) == 3 and {t["task_id"] for t in active} >= set(ids)
    assert answers[0].structured_content["next"].startswith("still running after 0.2 s")
    for late in answers[1:]:  # the status limit was spent by the first answer
        assert late.structured_content["status"] == "pending"
        assert "could not be read" in late.structured_content["next"]
        assert "RateLimitError" in late.structured_content["next"]
        assert "wait_for_task_tool" in late.structured_content["next"]


def test_a_failed_task_is_completed_with_is_error(server: dict[str, str]) -> None:
    async def body(c: Client) -> dict[str, Any]:
        handle = await c.session.call_tool("test_fail", {"message": "disk on fire"},
                                           allow_claimed=True)
        with anyio.fail_after(60):
            while (task := await get_task(c.session, handle.task_id))["status"] == "working":
                await anyio.sleep(0.1)
        return task

    task = with_client(server, "alice", body, extensions=[TasksClient()])
    assert task["status"] == "completed" and task["result"]["isError"] is True
    assert "RuntimeError: disk on fire" in task["result"]["content"][0]["text"]


def test_tasks_cancel_acknowledges_and_the_task_ends_cancelled(server: dict[str, str]) -> None:
    async def body(c: Client) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        handle = await c.session.call_tool("test_sleep", {"seconds": 30}, allow_claimed=True)
        ack = await cancel_task(c.session, handle.task_id)
        updated = await update_task(c.session, handle.task_id,
                                    {"never-asked": {"action": "accept"}})
        with anyio.fail_after(60):
            while (task := await get_task(c.session, handle.task_id))["status"] == "working":
                await anyio.sleep(0.1)
        return ack, updated, task

    ack, updated, task = with_client(server, "alice", body, extensions=[TasksClient()])
    for empty in (ack, updated):  # empty acknowledgements (the SDK stamps serverInfo in _meta)
        assert {k: v for k, v in empty.items() if k != "_meta"} == {"resultType": "complete"}
    assert task["status"] == "cancelled"


def test_unknown_and_foreign_task_ids_read_exactly_the_same(server: dict[str, str]) -> None:
    async def alices(c: Client) -> str:
        handle = await c.session.call_tool("test_echo", {}, allow_claimed=True)
        return handle.task_id

    task_id = with_client(server, "alice", alices, extensions=[TasksClient()])

    async def bobs(c: Client) -> list[tuple[int, str]]:
        seen = []
        for probe in (task_id, "00000000-0000-4000-8000-000000000000", "not a task id"):
            for call in (get_task, cancel_task):
                with pytest.raises(MCPError) as raised:
                    await call(c.session, probe)
                seen.append((raised.value.error.code, raised.value.error.message))
        return seen

    answers = with_client(server, "bob", bobs, extensions=[TasksClient()])
    assert set(answers) == {(-32602, "Failed to retrieve task: Task not found")}


def test_roles_apply_to_typed_tools_and_the_extension(server: dict[str, str]) -> None:
    async def body(c: Client) -> list[str]:
        plain = await c.call_tool("test_admin_only", {})
        raw = await c.session.call_tool("test_admin_only", {}, allow_claimed=True)
        return [tool_text(plain), tool_text(raw)]

    for text in with_client(server, "alice", body, extensions=[TasksClient()]):
        assert text.startswith("PermissionError: ") and "'admin' role" in text


# --- logging, resources, capabilities -----------------------------------------------------


def test_logging_notifications_follow_the_chosen_level(server: dict[str, str]) -> None:
    def run(level: str, **client: Any) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []

        async def on_log(params: Any) -> None:
            messages.append({"level": params.level, **params.data})

        async def body(c: Client) -> None:
            if client.get("mode") == "legacy":
                with warnings.catch_warnings():  # the SDK: deprecated as of 2026-07-28
                    warnings.simplefilter("ignore")
                    await c.set_logging_level(level)
            r = await c.call_tool("test_count", {"n": 3, "step_ms": 200})
            assert not r.is_error, tool_text(r)

        with_client(server, "alice", body, logging_callback=on_log, **client)
        return messages

    legacy = run("info", mode="legacy")
    assert any(m["status"] == "success" and "finished" in m["message"] for m in legacy), legacy
    assert all(m["level"] != "debug" for m in legacy)
    assert run("error", mode="legacy") == []
    modern = run("debug", log_level="debug")
    assert any(m["level"] == "debug" and m.get("progress") for m in modern), modern
    assert any("finished: success" in m.get("message", "") for m in modern), modern


def test_a_task_resource_reads_the_callers_task_only(server: dict[str, str]) -> None:
    async def alices(c: Client) -> tuple[str, dict[str, Any], list[str]]:
        templates = [t.uri_template for t in (await c.list_resource_templates()).resource_templates]
        r = await c.call_tool("test_count", {"n": 2, "step_ms": 0})
        listed = await c.call_tool("start_background_task_tool",
                                   {"task_type": "test_count", "params": {"n": 2}})
        task_id = listed.structured_content["task_id"]
        await c.call_tool("wait_for_task_tool", {"task_id": task_id})
        read = await c.read_resource(f"taskbroker://tasks/{task_id}")
        assert not r.is_error
        return task_id, json.loads(read.contents[0].text), templates

    task_id, body, templates = with_client(server, "alice", alices)
    assert templates == ["taskbroker://tasks/{task_id}"]
    assert body["status"] == "success" and body["result"] == {"sum": 3, "steps": 2}

    async def bobs(c: Client) -> list[str]:
        errors = []
        for probe in (task_id, "00000000-0000-4000-8000-000000000000"):
            with pytest.raises(MCPError) as raised:
                await c.read_resource(f"taskbroker://tasks/{probe}")
            errors.append(raised.value.error.message.replace(probe, "<id>"))
        return errors

    foreign, unknown = with_client(server, "bob", bobs)
    assert foreign == unknown


def test_capabilities_advertise_what_is_served(server: dict[str, str]) -> None:
    async def body(c: Client) -> Any:
        return c.session.server_capabilities

    modern = with_client(server, "alice", body)
    assert TASKS in (modern.extensions or {}) and modern.prompts is None
    assert modern.resources is not None and modern.tools is not None
    legacy = with_client(server, "alice", body, mode="legacy")
    assert legacy.logging is not None and legacy.prompts is None


def test_typed_tools_and_waiting_over_stdio(dist_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(dist_env, TASKBROKER_TOOL_WAIT_SECONDS="30", TASKBROKER_WATCH_INTERVAL="0.1")

    async def body(c: Client) -> tuple[Any, Any]:
        typed = await c.call_tool("test_count", {"n": 3, "step_ms": 50})
        started = await c.call_tool("start_background_task_tool",
                                    {"task_type": "test_count", "params": {"n": 2}})
        waited = await c.call_tool("wait_for_task_tool",
                                   {"task_id": started.structured_content["task_id"]})
        return typed.structured_content, waited.structured_content

    typed, waited = run_with(stdio_client(env), body)
    assert typed == {"sum": 6, "steps": 3}
    assert waited["status"] == "success" and waited["result"] == {"sum": 3, "steps": 2}


def test_waiting_is_woken_by_redis_pub_sub_not_by_polling(dist_env: dict[str, str]) -> None:
    """Reads by the fallback come every 120 s here, and polling would read every 10 s: a
    wait that sees the task's steps (300 ms apart) was woken by the worker's change
    notifications."""
    env = dict(dist_env, TASKBROKER_WATCH_FALLBACK_SECONDS="120",
               TASKBROKER_WATCH_INTERVAL="10")

    async def body(c: Client) -> tuple[Any, list[float], float]:
        progress: list[float] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append(done)

        started = await c.call_tool("start_background_task_tool",
                                    {"task_type": "test_count", "params": {"n": 4,
                                                                           "step_ms": 300}})
        began = anyio.current_time()
        waited = await c.call_tool("wait_for_task_tool",
                                   {"task_id": started.structured_content["task_id"],
                                    "timeout_seconds": 50}, progress_callback=on_progress)
        return waited.structured_content, progress, anyio.current_time() - began

    waited, progress, took = run_with(stdio_client(env), body)
    assert waited["status"] == "success" and waited["result"] == {"sum": 10, "steps": 4}
    # woken at each step: at least two of the steps after the first read were reported (a
    # 10-s poll would have seen the first read and then the end)
    assert len({25.0, 50.0, 75.0} & set(progress)) >= 2, progress
    assert took < 9.5, took  # before the first 10-s poll could have come


def test_one_user_cannot_hold_unbounded_waits(dist_env: dict[str, str],
                                              tmp_path: Path) -> None:
    """TASKBROKER_MAX_WAITS_PER_USER=2: two waits are held, the third is refused at once with
    RateLimitError, and a typed tool past the cap answers its task id at once."""
    env = dict(dist_env, TASKBROKER_MAX_WAITS_PER_USER="2", TASKBROKER_TOOL_WAIT_SECONDS="30")

    async def body(c: Client) -> tuple[list[Any], Any, float]:
        started = await c.call_tool("start_background_task_tool", {
            "task_type": "test_parked", "params": {"path": str(tmp_path / "never")}})
        task_id = started.structured_content["task_id"]  # on a queue nobody consumes
        answers: list[Any] = [None, None, None]
        typed: list[Any] = []
        took: list[float] = []

        async def wait(i: int, after: float) -> None:
            await anyio.sleep(after)
            answers[i] = await c.call_tool("wait_for_task_tool",
                                           {"task_id": task_id, "timeout_seconds": 3})

        async def typed_call() -> None:
            await anyio.sleep(1.0)  # while both waits are held
            began = anyio.current_time()
            typed.append(await c.call_tool("test_sleep", {"seconds": 5}))
            took.append(anyio.current_time() - began)

        async with anyio.create_task_group() as group:
            group.start_soon(wait, 0, 0.0)
            group.start_soon(wait, 1, 0.0)
            group.start_soon(wait, 2, 0.5)
            group.start_soon(typed_call)
        return answers, typed[0], took[0]

    answers, typed, took = run_with(stdio_client(env), body)
    held = [a for a in answers if not a.is_error]
    refused = [a for a in answers if a.is_error]
    assert len(held) == 2 and all(a.structured_content["status"] == "pending" for a in held)
    assert len(refused) == 1
    assert tool_text(refused[0]).startswith("RateLimitError: too many waits at once")
    assert not typed.is_error and "task_id" in typed.structured_content
    assert "next" in typed.structured_content  # answered with its id, not waited for
    assert took < 2.5, took  # not the 30 s tool wait


def test_summary_text_carries_a_finished_tasks_result_once(dist_env: dict[str, str]) -> None:
    """TASKBROKER_TOOL_TEXT=summary: the result travels in structured content only; the text
    describes it (size and keys) instead of repeating it."""
    env = dict(dist_env, TASKBROKER_TOOL_WAIT_SECONDS="30", TASKBROKER_WATCH_INTERVAL="0.1",
               TASKBROKER_TOOL_TEXT="summary")

    async def body(c: Client) -> tuple[Any, Any]:
        typed = await c.call_tool("test_count", {"n": 3, "step_ms": 20})
        started = await c.call_tool("start_background_task_tool",
                                    {"task_type": "test_count", "params": {"n": 2}})
        task_id = started.structured_content["task_id"]
        await c.call_tool("wait_for_task_tool", {"task_id": task_id})
        polled = await c.call_tool("get_task_status_tool", {"task_id": task_id})
        return typed, polled

    typed, polled = run_with(stdio_client(env), body)
    result = {"sum": 6, "steps": 3}
    assert typed.structured_content == result
    size = len(json.dumps(result, separators=(",", ":")))
    assert tool_text(typed) == (f"finished: success; the result is in structuredContent "
                                f"({size} bytes of JSON; keys: sum, steps)")
    assert polled.structured_content["result"] == {"sum": 3, "steps": 2}
    text = json.loads(tool_text(polled))
    assert text["status"] == "success" and text["task_id"] == polled.structured_content["task_id"]
    assert text["result"] == "in structuredContent (19 bytes of JSON; keys: sum, steps)"
    assert '"sum":3' not in tool_text(polled)  # once: not repeated in the text


FASTMCP_PYTHON = ROOT / ".cache" / "fastmcp-venv" / "bin" / "python"


def test_an_independent_client_fastmcp_4_runs_and_cancels_tasks(server: dict[str, str]) -> None:
    """The fastmcp 4 client (fastmcp[tasks], its own venv made by scripts/install-test-deps.sh)
    speaks the tasks extension on its own: transparent calls, explicit handles, cancel, and
    another user's id refused like an unknown one."""
    assert FASTMCP_PYTHON.exists(), "run scripts/install-test-deps.sh (make test does)"

    async def alices(c: Client) -> str:
        handle = await c.session.call_tool("test_echo", {}, allow_claimed=True)
        return handle.task_id

    foreign = with_client(server, "alice", alices, extensions=[TasksClient()])
    done = subprocess.run([str(FASTMCP_PYTHON), str(ROOT / "tests/support/fastmcp_probe.py"),
                           server["url"], server["bob"], foreign],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["transparent"] == {"sum": 10, "steps": 4}
    assert seen["first_status"] in ("working", "completed")
    assert seen["handle_result"] == {"sum": 6, "steps": 3} and seen["final_status"] == "completed"
    assert seen["cancelled_status"] == "cancelled"
    assert seen["foreign_and_unknown"] == ["-32602: Failed to retrieve task: Task not found"] * 2


# --- task status notifications (subscriptions/listen with taskIds) ------------------------


def _listen(server: dict[str, str], user: str, notifications: dict[str, Any], *,
            declare: bool = True, limit_s: float = 60) -> list[dict[str, Any]]:
    """A raw streamable-HTTP client (the SDK's listen() knows no taskIds): one
    subscriptions/listen request; every JSON-RPC frame of its stream, in order, until the
    stream's result or error."""
    headers, body = listen_request(notifications, request_id="listen-1", declare=declare,
                                   token=server[user])
    frames: list[dict[str, Any]] = []
    with httpx.Client(timeout=limit_s) as http, \
            http.stream("POST", server["url"], headers=headers, json=body) as resp:
        if not resp.headers.get("content-type", "").startswith("text/event-stream"):
            resp.read()  # an error answered at once, as a JSON body
            return [resp.json()]
        for line in resp.iter_lines():
            if not line.startswith("data:"):
                continue
            frame = json.loads(line[5:])
            frames.append(frame)
            if "result" in frame or "error" in frame:
                break
    return frames


def test_task_notifications_follow_a_task_to_its_result_without_polling(
        server: dict[str, str]) -> None:
    async def start(c: Client) -> tuple[str, str]:
        slow = await c.session.call_tool("test_count", {"n": 3, "step_ms": 400},
                                         allow_claimed=True)
        other = await c.session.call_tool("test_echo", {}, allow_claimed=True)
        return slow.task_id, other.task_id

    task_id, bobs = with_client(server, "bob", start, extensions=[TasksClient()])
    alices, _ = with_client(server, "alice", start, extensions=[TasksClient()])
    unknown = "00000000-0000-4000-8000-000000000000"
    frames = _listen(server, "bob", {"taskIds": [task_id, unknown, alices, bobs, task_id]})
    ack, *notes, end = frames
    assert ack["method"] == "notifications/subscriptions/acknowledged"
    # bob's own tasks only, once each: alice's id and an unknown one are left out alike
    assert ack["params"]["notifications"]["taskIds"] == [task_id, bobs]
    assert all(n["method"] == "notifications/tasks" for n in notes)
    assert {n["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"] for n in notes} \
        == {"listen-1"}
    mine = [n["params"] for n in notes if n["params"]["taskId"] == task_id]
    assert mine[0]["status"] in ("working", "completed")  # the state at once, then changes
    assert [m["status"] for m in mine].count("completed") == 1 and mine[-1]["status"] == \
        "completed"
    assert mine[-1]["result"]["structuredContent"] == {"sum": 6, "steps": 3}  # 1 + 2 + 3
    assert [n["params"]["status"] for n in notes if n["params"]["taskId"] == bobs][-1] \
        == "completed"
    # every task ended: the stream closes gracefully with its result
    assert end["id"] == "listen-1" and "result" in end

    async def read(c: Client) -> dict[str, Any]:
        return await get_task(c.session, task_id)

    polled = with_client(server, "bob", read, extensions=[TasksClient()])
    pushed = {k: v for k, v in mine[-1].items() if k != "_meta"}
    assert pushed == {k: v for k, v in polled.items() if k not in ("_meta", "resultType")}


def test_task_notifications_need_the_extension_and_a_list_of_ids(
        server: dict[str, str]) -> None:
    undeclared = _listen(server, "alice", {"taskIds": []}, declare=False)
    assert undeclared[-1]["error"]["code"] == -32021
    assert undeclared[-1]["error"]["data"]["requiredCapabilities"] == {
        "extensions": {TASKS: {}}}
    for bad in ("one-id", [1, 2], ["x"] * 101):
        refused = _listen(server, "alice", {"taskIds": bad})
        assert refused[-1]["error"]["code"] == -32602
        assert "notifications.taskIds" in refused[-1]["error"]["message"]
    # nothing of the caller's to follow: acknowledged empty, and the stream ends at once
    nothing = _listen(server, "alice", {"taskIds": ["00000000-0000-4000-8000-000000000000"]})
    assert nothing[0]["params"]["notifications"]["taskIds"] == []
    assert "result" in nothing[-1] and len(nothing) == 2
