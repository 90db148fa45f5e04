"""ASGI guards in front of every HTTP endpoint: the Host check and one Authorization header."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from taskbroker.core.hosts import HostPolicy

__all__ = ["HostCheckMiddleware", "SingleAuthorizationMiddleware"]


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _headers(scope: Scope, name: bytes) -> list[bytes]:
    return [v for k, v in scope.get("headers", []) if k.lower() == name]


class HostCheckMiddleware:
    """Answers 421 to a request whose ``Host`` the :class:`HostPolicy` does not accept, on
    every path (``/mcp`` and the operational endpoints alike)."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the Host of HTTP requests; pass everything else through."""
        if scope["type"] == "http":
            hosts = _headers(scope, b"host")
            host = hosts[0].decode("latin-1") if len(hosts) == 1 else None
            if not self.policy.accepts(host):
                await _refuse(send, 421, "misdirected request: this Host is not served here "
                              "(set TASKBROKER_ALLOWED_HOSTS)")
                return
        await self.app(scope, receive, send)


class SingleAuthorizationMiddleware:
    """Answers 400 to a request with more than one ``Authorization`` header (which one a
    proxy and the server would each read is ambiguous)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse duplicated credentials; pass everything else through."""
        if scope["type"] == "http" and len(_headers(scope, b"authorization")) > 1:
            await _refuse(send, 400, "bad request: more than one Authorization header")
            return
        await self.app(scope, receive, send)
