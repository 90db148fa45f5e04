"""Helpers of the plugin-API tests: run the CLI, talk to a real stdio MCP server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import anyio
from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

FINAL = ("success", "failure", "revoked", "expired")


def run_cli(env: Mapping[str, str], *args: str,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``taskbroker ARGS`` with ``env``; returns the completed process (never raises)."""
    return subprocess.run([sys.executable, "-m", "taskbroker", *args], env=dict(env),
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          stdin=subprocess.DEVNULL)


def plugins_json(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``taskbroker plugins --json`` by plugin name."""
    done = run_cli(env, "plugins", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    return {row["name"]: row for row in json.loads(done.stdout)}


def with_mcp(env: Mapping[str, str], session: Callable[[Client], Awaitable[T]]) -> T:
    """Start ``taskbroker serve --transport stdio --no-worker`` with ``env``, run ``session``
    with a connected client, and stop the server (the client's exit stops it)."""

    async def main() -> T:
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "taskbroker", "serve", "--transport", "stdio", "--no-worker"],
            env=dict(env), cwd=ROOT,
        )
        async with Client(params) as client:
            return await session(client)

    return anyio.run(main)


async def tool(client: Client, name: str, **arguments: Any) -> Any:
    """Call tool ``name`` and return its structured result (a list tool's ``result``)."""
    result = await client.call_tool(name, arguments)
    if result.is_error:
        raise ToolFailed(" ".join(getattr(c, "text", "") for c in result.content))
    content = result.structured_content
    assert content is not None, f"{name} returned no structured content"
    return content["result"] if set(content) == {"result"} else content


class ToolFailed(Exception):
    """An MCP tool answered with an error (its text is the message)."""


async def wait_status(client: Client, task_id: str, *, timeout: float = 60,
                      until: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """Poll ``get_task_status_tool`` until the task is final (or ``until`` holds)."""
    deadline = time.monotonic() + timeout
    while True:
        status = await tool(client, "get_task_status_tool", task_id=task_id)
        if (until(status) if until else status["status"] in FINAL):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {task_id} still {status['status']} after {timeout} s")
        await anyio.sleep(0.1)
