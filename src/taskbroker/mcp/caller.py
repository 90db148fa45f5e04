"""How an MCP request reaches TaskService: as which principal, off the event loop, and with
the service's errors turned into tool errors."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token

from taskbroker.core.pipeline.principal import Principal
from taskbroker.mcp.errors import to_tool_error

__all__ = ["ServiceCaller"]

T = TypeVar("T")


class ServiceCaller:
    """Runs service operations for the caller of the current MCP request.

    Args:
        local_principal: the caller when the request carries no bearer token (stdio).
    """

    def __init__(self, local_principal: Principal) -> None:
        self.local_principal = local_principal

    def principal(self) -> Principal:
        """The caller of the current request: the bearer token's user, else the local one."""
        token = get_access_token()
        if token is None:
            return self.local_principal
        return Principal(token.subject or token.client_id, frozenset(token.scopes))

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(principal, *args, **kwargs)`` in a worker thread (the service blocks on the
        database and the broker); its errors propagate unchanged."""
        who = self.principal()
        return await anyio.to_thread.run_sync(functools.partial(fn, who, *args, **kwargs))

    async def tool(self, tool: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Like :meth:`run`, for a tool: errors become the documented tool errors."""
        try:
            return await self.run(fn, *args, **kwargs)
        except Exception as exc:
            raise to_tool_error(exc, tool) from None
