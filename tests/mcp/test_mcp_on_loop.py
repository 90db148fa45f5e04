"""Starts and status reads served on the event loop (PostgreSQL + Redis), with a real server
and the official SDK client: concurrent starts of one user under the active-task cap (their
per-user lock is held while the insert and publish are awaited), and the same answers with
`TASKBROKER_SERVE_ON_LOOP=false`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import LOG_DIR
from tests.support.mcp_client import http_client, tool_text
from tests.support.procs import Proc, serving_http

CALLS = 12  # concurrent starts of one user
CAP = 200  # their active-task cap (well above what this module starts)


@pytest.fixture(scope="module", params=["on-loop", "threads"])
def server(request: pytest.FixtureRequest, dist_env: dict[str, str],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`taskbroker serve` over HTTP with an active-task cap, its calls on the loop or in
    threads; the URL and a token."""
    from taskbroker.mcp.tokens import add_token

    tokens = tmp_path_factory.mktemp("tokens") / "tokens.json"
    token = add_token(tokens, "loop-carol", [])
    env = dict(dist_env, TASKBROKER_TOKEN_FILE=str(tokens),
               TASKBROKER_MAX_ACTIVE_PER_USER=str(CAP),
               TASKBROKER_SERVE_ON_LOOP=str(request.param == "on-loop").lower())
    with serving_http(env, name=f"loop-server-{request.param}", log_dir=LOG_DIR) as port:
        yield {"url": f"http://127.0.0.1:{port}/mcp", "token": token}


@pytest.mark.timeout(120)
def test_concurrent_starts_of_one_user_all_answer_and_read_back(
        server: dict[str, str], tmp_path: Path) -> None:
    # On the loop, each start holds its user's lock (the active-task cap) while its insert
    # and publish are awaited; a plain blocking acquire by the next start of the same user
    # would stop the loop for good and every call here would time out.
    async def main() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        started: list[dict[str, Any]] = [{}] * CALLS
        read: list[dict[str, Any]] = [{}] * CALLS
        async with http_client(server["url"], server["token"]) as c:
            async def start(i: int) -> None:
                r = await c.call_tool("start_background_task_tool", {
                    "task_type": "test_parked", "params": {"path": str(tmp_path / f"m{i}")}})
                assert not r.is_error, tool_text(r)
                started[i] = r.structured_content

            async def status(i: int) -> None:
                r = await c.call_tool("get_task_status_tool",
                                      {"task_id": started[i]["task_id"]})
                assert not r.is_error, tool_text(r)
                read[i] = r.structured_content

            for step in (start, status):
                async with anyio.create_task_group() as tg:
                    for i in range(CALLS):
                        tg.start_soon(step, i)
        return started, read

    started, read = anyio.run(main)
    ids = [s["task_id"] for s in started]
    assert len(set(ids)) == CALLS
    assert all(s["status"] == "pending" and s["task_type"] == "test_parked" for s in started), \
        started[0]
    assert [r["task_id"] for r in read] == ids
    assert all(r["status"] == "pending" and r["progress"] == 0 for r in read)


def test_started_tasks_run_on_a_worker_and_their_results_read_back(
        server: dict[str, str], worker: Proc) -> None:
    # on the loop, the first start of a type goes through Celery in a worker thread (kombu
    # declares the queue), the second through Celery on the loop (its message captured and
    # kept), the third from that message's template: a worker must run all three
    async def main() -> list[dict[str, Any]]:
        finals = []
        async with http_client(server["url"], server["token"]) as c:
            for n in (4, 5, 6):
                r = await c.call_tool("start_background_task_tool",
                                      {"task_type": "test_count", "params": {"n": n, "step_ms": 0}})
                assert not r.is_error, tool_text(r)
                done = await c.call_tool("wait_for_task_tool", {
                    "task_id": r.structured_content["task_id"], "timeout_seconds": 30})
                assert not done.is_error, tool_text(done)
                finals.append(done.structured_content)
        return finals

    finals = anyio.run(main)
    assert [f["status"] for f in finals] == ["success"] * 3
    assert [f["result"] for f in finals] == [{"sum": n * (n + 1) // 2, "steps": n}
                                             for n in (4, 5, 6)]
