"""Requests that answer at once get one JSON response on their own task; calls that may
stream keep the SDK's streaming mode (progress notifications, cancel on disconnect)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import uvicorn
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import Message

from taskbroker.mcp import sessions
from taskbroker.mcp.exchange import answered_at_once, buffer_body
from taskbroker.mcp.http import fair_streamable_app
from taskbroker.mcp.seed_tools import QUICK_TOOLS
from taskbroker.mcp.sessions import SessionLimits
from tests.support.mcp_client import http_client
from tests.support.procs import free_port, port_open, wait_for


def _call(name: str, **extra: Any) -> bytes:
    import json

    return json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                       "params": {"name": name, "arguments": {}}, **extra}).encode()


@pytest.mark.parametrize(("body", "quick"), [
    (_call("get_task_status_tool"), True),
    (_call("start_background_task_tool"), True),
    (_call("wait_for_task_tool"), False),
    (_call("test_count"), False),  # a typed tool may wait and report progress
    (b'{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"x"}}', True),
    (b'{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{}}', False),
    (b'{"jsonrpc":"2.0","method":"tools/call","params":{"name":"get_task_status_tool"}}',
     False),  # a notification-shaped body: the SDK acknowledges it
    (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', False),  # a batch: the SDK refuses it
    (b"{not json", False),
    (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"nope"}', False),
])
def test_which_requests_answer_at_once(body: bytes, quick: bool) -> None:
    assert answered_at_once(body, QUICK_TOOLS) is quick


def test_buffer_body_replays_the_chunks_then_reads_on() -> None:
    incoming: list[Message] = [
        {"type": "http.request", "body": b'{"a":', "more_body": True},
        {"type": "http.request", "body": b"1}", "more_body": False},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return incoming.pop(0)

    async def main() -> tuple[bytes, list[Message]]:
        body, replay = await buffer_body(receive)
        return body, [await replay(), await replay(), await replay()]

    body, seen = anyio.run(main)
    assert body == b'{"a":1}'
    assert [m.get("body") for m in seen[:2]] == [b'{"a":', b"1}"]
    assert seen[2] == {"type": "http.disconnect"}


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[bool]]]:
    """A real MCP server over HTTP with one quick and one streaming tool, our session manager,
    and a record of the mode each request of the current revision was served in."""
    modes: list[bool] = []
    real = sessions.handle_modern_request

    async def spy(app: Any, security: Any, json_response: bool, *rest: Any) -> None:
        modes.append(json_response)
        await real(app, security, json_response, *rest)

    monkeypatch.setattr(sessions, "handle_modern_request", spy)
    mcp = MCPServer(name="exchange-test")

    @mcp.tool(name="get_task_status_tool")
    async def quick(task_id: str) -> dict[str, str]:
        """Answers at once."""
        return {"task_id": task_id, "status": "pending"}

    @mcp.tool(name="slow")
    async def slow(ctx: Context[Any, Any]) -> str:
        """Reports progress twice, then answers."""
        for step in (50, 100):
            await ctx.report_progress(step, 100, f"step {step}")
            await anyio.sleep(0.05)
        return "done"

    app = fair_streamable_app(mcp, SessionLimits(), transport_security=TransportSecuritySettings(
        enable_dns_rebinding_protection=False))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: port_open(port), timeout=30, what="test server listening")
        yield f"http://127.0.0.1:{port}/mcp", modes
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_quick_call_is_one_json_answer_and_a_streaming_one_still_streams(
        served: tuple[str, list[bool]]) -> None:
    url, modes = served
    progress: list[tuple[float, str | None]] = []

    async def main() -> tuple[Any, Any]:
        async with http_client(url) as client:
            modes.clear()
            status = await client.call_tool("get_task_status_tool", {"task_id": "t-1"})
            streamed = await client.call_tool(
                "slow", {}, progress_callback=lambda p, _t, m: _note(progress, p, m))
            return status, streamed

    status, streamed = anyio.run(main)
    assert status.structured_content == {"task_id": "t-1", "status": "pending"}
    assert streamed.content[0].text == "done"  # type: ignore[union-attr]
    assert [p for p, _ in progress] == [50, 100]  # notifications still reach the client
    # the quick call (and the tools/list the client sends to read output schemas) in JSON
    # mode, the streaming call in the SDK's streaming mode
    assert modes[-1] is False and modes[:-1] and all(modes[:-1])


async def _note(progress: list[tuple[float, str | None]], value: float,
                message: str | None) -> None:
    progress.append((value, message))

