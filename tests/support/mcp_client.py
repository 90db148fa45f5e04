"""Small helpers around the real ``mcp`` SDK client for tests."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

__all__ = ["http_client", "run_with", "stdio_client", "tool_text"]


def stdio_client(env: dict[str, str], *args: str, **client_args: Any) -> Client:
    """A client that launches ``taskbroker serve --transport stdio`` as its subprocess (extra
    ``Client`` fields, e.g. ``extensions``, allowed)."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "taskbroker", "serve", "--transport", "stdio", "--no-worker", *args],
        env=env,
    )
    return Client(params, **client_args)


def http_client(url: str, token: str | None = None) -> Client:
    """A streamable-HTTP client, with a bearer token when given."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx2.AsyncClient(headers=headers, timeout=30)
    return Client(streamable_http_client(url, http_client=http))


def run_with(client: Client, body: Callable[[Client], Awaitable[Any]]) -> Any:
    """Open ``client``, run ``body(client)`` and return its result (sync entry for tests)."""

    async def main() -> Any:
        async with client as c:
            return await body(c)

    return anyio.run(main)


def tool_text(result: Any) -> str:
    """The text content of a tool result (where error messages are)."""
    return "".join(getattr(part, "text", "") for part in result.content)
