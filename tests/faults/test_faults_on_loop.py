"""Outages while starts and status reads are served on the event loop, through a real
`taskbroker serve` and the official SDK client: the database cut (through a TCP proxy) and
Redis stopped.  Calls answer the documented unavailable error instead of hanging, the rest of
the server keeps answering meanwhile (the loop is never blocked), and the first call after
each recovery succeeds."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from tests.conftest import LOG_DIR
from tests.support.mcp_client import http_client, run_with, tool_text
from tests.support.procs import Postgres, Redis, serving_http
from tests.support.tcpproxy import TcpProxy

PARKED = {"task_type": "test_parked", "params": {"path": "/nonexistent/tb-on-loop-fault"}}


async def _call(c: Client, tool: str, args: dict[str, Any]) -> tuple[bool, str, Any]:
    r = await c.call_tool(tool, args)
    return r.is_error, tool_text(r), r.structured_content


@pytest.mark.timeout(240)
def test_outages_answer_unavailable_and_the_first_call_after_recovery_succeeds(
        dist_env: dict[str, str], postgres: Postgres, private_redis: Redis) -> None:
    proxy = TcpProxy("127.0.0.1", int(postgres.url.split(":")[-1].split("/")[0]))
    url = postgres.url.replace(postgres.url.split("@")[1].split("/")[0],
                               f"127.0.0.1:{proxy.port}")
    env = dict(dist_env, TASKBROKER_DATABASE_URL=url, TASKBROKER_REDIS_URL=private_redis.url,
               TASKBROKER_HTTP_AUTH="none", TASKBROKER_BROKER_TIMEOUT="1",
               TASKBROKER_RATE_LIMITS="start: 1000/minute; status: 1000/minute")
    with contextlib.closing(proxy), serving_http(env, name="loop-fault-server",
                                                 log_dir=LOG_DIR) as port:
        async def body(c: Client) -> dict[str, Any]:
            seen: dict[str, Any] = {}
            # twice: the first publish to the queue is Celery's in a thread, the next on the loop
            for _ in range(2):
                failed, text, first = await _call(c, "start_background_task_tool", PARKED)
                assert not failed, text
            task_id = first["task_id"]

            await anyio.to_thread.run_sync(proxy.cut)
            seen["db start"] = await _call(c, "start_background_task_tool", PARKED)
            seen["db status"] = await _call(c, "get_task_status_tool", {"task_id": task_id})
            seen["db types"] = await _call(c, "list_task_types_tool", {})
            await anyio.to_thread.run_sync(proxy.restore)
            seen["db back start"] = await _call(c, "start_background_task_tool", PARKED)
            seen["db back status"] = await _call(c, "get_task_status_tool", {"task_id": task_id})

            await anyio.to_thread.run_sync(private_redis.stop)
            seen["redis start"] = await _call(c, "start_background_task_tool", PARKED)
            # (every tool is refused while the rate limiter's Redis is away: fail closed)
            seen["redis health"] = await anyio.to_thread.run_sync(
                lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code)
            await anyio.to_thread.run_sync(private_redis.restart)
            seen["redis back start"] = await _call(c, "start_background_task_tool", PARKED)
            return seen

        seen = run_with(http_client(f"http://127.0.0.1:{port}/mcp"), body)

    for name in ("db start", "db status", "redis start"):
        failed, text, _ = seen[name]
        assert failed and "unavailable" in text.lower(), (name, text)
    failed, text, _ = seen["db types"]  # the rest of the server kept answering
    assert not failed, text
    assert seen["redis health"] == 200
    for name in ("db back start", "db back status", "redis back start"):
        failed, text, answer = seen[name]
        assert not failed, (name, text)
        assert answer["status"] == "pending", (name, answer)
