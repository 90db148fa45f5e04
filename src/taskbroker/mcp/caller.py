"""How an MCP request reaches TaskService: as which principal, in a worker thread or on the
event loop, and with the service's errors turned into tool errors."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token

from taskbroker.core.loop_bridge import run_on_loop
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.pipeline.service import TaskService
from taskbroker.mcp.errors import to_tool_error

__all__ = ["LOOP_OPERATIONS", "ServiceCaller"]

T = TypeVar("T")

#: the operations run on the event loop when the service's adapters await their I/O there
LOOP_OPERATIONS = ("start", "status")


class ServiceCaller:
    """Runs service operations for the caller of the current MCP request.

    Args:
        local_principal: the caller when the request carries no bearer token (stdio).
        loop_service: a service whose ledger and broker await their I/O on the event loop
            (``loop_io``): its starts and status reads run there
            (:func:`~taskbroker.core.loop_bridge.run_on_loop`) instead of in a worker thread.
    """

    def __init__(self, local_principal: Principal, *,
                 loop_service: TaskService | None = None) -> None:
        self.local_principal = local_principal
        self._on_loop: tuple[Any, ...] = ()
        self._call: Any = None
        if loop_service is not None and loop_service.ledger.loop_io \
                and loop_service.broker.loop_io:
            self._on_loop = (loop_service.start, loop_service.status)
            self._call = loop_service.call

    def principal(self) -> Principal:
        """The caller of the current request: the bearer token's user, else the local one."""
        token = get_access_token()
        if token is None:
            return self.local_principal
        return Principal(token.subject or token.client_id, frozenset(token.scopes))

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(principal, *args, **kwargs)`` in a worker thread (the service blocks on the
        database and the broker), or on the loop for a start or status read of a loop
        service; its errors propagate unchanged."""
        call = functools.partial(fn, self.principal(), *args, **kwargs)
        if self._on_loop and (fn in self._on_loop or (
                fn == self._call and args and args[0] in LOOP_OPERATIONS)):
            return await run_on_loop(call)
        return await anyio.to_thread.run_sync(call)

    async def tool(self, tool: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Like :meth:`run`, for a tool: errors become the documented tool errors."""
        try:
            return await self.run(fn, *args, **kwargs)
        except Exception as exc:
            raise to_tool_error(exc, tool) from None
