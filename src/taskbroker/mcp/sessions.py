"""MCP sessions that one user cannot use as a weapon.

The SDK's :class:`StreamableHTTPSessionManager` keeps every session until the client deletes
it or it idles out (30 minutes by default) and refuses everybody with 503 once 10,000 are
open, so one user who opens sessions and never closes them locks every other user out.
:class:`FairSessionManager` keeps the SDK's transport and adds, per user (the bearer token's
subject; the client address when authentication is off):

* a cap on open sessions: opening one more closes that user's least recently used session
  (a client that lost its session id gets 404 and opens a new one, as the spec says);
* a creation rate: beyond it the request is answered 429 with ``Retry-After``;
* a global cap with a fair share: at the cap a new session closes the least recently used
  session of the user holding the most, so a newcomer is always served;
* a short idle timeout (the SDK's), so abandoned sessions do not pile up.

Memory is bounded by the global cap times the (small, fixed) cost of an idle session.

It also chooses, for each request of the current (sessionless) revision, between one JSON
answer and a stream (:mod:`taskbroker.mcp.exchange`).
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections import OrderedDict
from typing import Any

import anyio
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from mcp.server._streamable_http_modern import handle_modern_request
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, AuthorizationContext
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER, StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from taskbroker.mcp.exchange import answered_at_once, buffer_body

__all__ = ["FairSessionManager", "SessionLimits"]

log = logging.getLogger("taskbroker.sessions")

_opener: contextvars.ContextVar[str] = contextvars.ContextVar("taskbroker_session_opener")


class SessionLimits:
    """The limits :class:`FairSessionManager` enforces.

    Args:
        per_user: open sessions one user may hold.
        total: open sessions in all.
        rate: new sessions one user may open (``limits`` notation, e.g. ``60/minute``).
        idle_seconds: a session with no request for this long is closed.
    """

    def __init__(self, *, per_user: int = 32, total: int = 2000, rate: str = "60/minute",
                 idle_seconds: float = 600.0) -> None:
        if per_user < 1 or total < 1:
            raise ValueError("session limits: per_user and total must be at least 1")
        try:
            self.rate = parse(rate)
        except ValueError:
            raise ValueError(f"TASKBROKER_SESSION_RATE: not a rate limit ({rate!r}); "
                             "accepted: 'N/second|minute|hour', e.g. '60/minute'") from None
        self.per_user, self.total, self.idle_seconds = per_user, total, idle_seconds


def session_user(scope: Scope) -> str:
    """Whose session a request opens: the token's subject, else the client address."""
    user = scope.get("user")
    if isinstance(user, AuthenticatedUser):
        token = user.access_token
        return f"user:{token.subject or token.client_id}"
    client = scope.get("client")
    return f"addr:{client[0] if client else 'unknown'}"


class FairSessionManager(StreamableHTTPSessionManager):
    """The SDK's session manager with per-user caps, a creation rate and fair eviction."""

    def __init__(self, *args: Any, limits: SessionLimits,
                 quick_tools: frozenset[str] = frozenset(), **kwargs: Any) -> None:
        kwargs["max_sessions"] = None  # the global cap is enforced here, fairly
        kwargs["session_idle_timeout"] = limits.idle_seconds
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.quick_tools = quick_tools
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        # user -> their sessions, least recently used first
        self._by_user: dict[str, OrderedDict[str, None]] = {}
        self._user_of: dict[str, str] = {}
        self.evicted = 0

    # --- requests ---------------------------------------------------------------------

    async def _handle_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Requests of the current revision that answer at once get one JSON response on
        their own task (:mod:`taskbroker.mcp.exchange`); the rest go as the SDK sends them."""
        headers = Headers(scope=scope)
        version = headers.get(MCP_PROTOCOL_VERSION_HEADER)
        if (self.json_response or scope.get("method") != "POST" or version is None
                or version in HANDSHAKE_PROTOCOL_VERSIONS
                or "text/event-stream" not in headers.get("accept", "")):
            await super()._handle_request(scope, receive, send)
            return
        body, replay = await buffer_body(receive)
        await handle_modern_request(self.app, self.security_settings,
                                    answered_at_once(body, self.quick_tools),
                                    self._lifespan_state, scope, replay, send)

    async def _handle_stateful_request(self, scope: Scope, receive: Receive,
                                       send: Send) -> None:
        session_id = Request(scope).headers.get(MCP_SESSION_ID_HEADER)
        user = session_user(scope)
        if session_id is None:
            if not self._limiter.hit(self.limits.rate, user):
                reset = self._limiter.get_window_stats(self.limits.rate, user).reset_time
                retry = max(1, int(reset - time.time() + 0.999))
                log.warning("session rate limit: refused a new session (retry in %s s)", retry)
                await JSONResponse(
                    {"jsonrpc": "2.0", "id": None, "error": {
                        "code": -32000,
                        "message": f"RateLimitError: too many new sessions ({self.limits.rate}"
                                   f"); retry_after={retry} s"}},
                    status_code=429, headers={"Retry-After": str(retry)},
                )(scope, receive, send)
                return
            _opener.set(user)
        elif session_id in self._user_of:
            owned = self._by_user.get(self._user_of[session_id])
            if owned is not None and session_id in owned:
                owned.move_to_end(session_id)
        await super()._handle_stateful_request(scope, receive, send)

    def _admit_session(self, requestor: AuthorizationContext | None
                       ) -> StreamableHTTPServerTransport | None:
        user = _opener.get("addr:unknown")
        owned = self._by_user.setdefault(user, OrderedDict())
        while len(owned) >= self.limits.per_user:
            self._evict(next(iter(owned)), "per-user cap")
        while len(self._server_instances) >= self.limits.total:
            heaviest = max(self._by_user.items(), key=lambda kv: len(kv[1]))[1]
            self._evict(next(iter(heaviest)), "global cap")
        transport = super()._admit_session(requestor)
        if transport is not None and transport.mcp_session_id is not None:
            owned[transport.mcp_session_id] = None
            self._user_of[transport.mcp_session_id] = user
        return transport

    # --- bookkeeping ------------------------------------------------------------------

    def _forget(self, session_id: str) -> None:
        user = self._user_of.pop(session_id, None)
        if user is None:
            return
        owned = self._by_user.get(user)
        if owned is not None:
            owned.pop(session_id, None)
            if not owned:
                del self._by_user[user]

    def _evict(self, session_id: str, why: str) -> None:
        """Close ``session_id`` now: it answers 404 from here on; its transport is terminated
        in the background."""
        self._forget(session_id)
        self._session_owners.pop(session_id, None)
        transport = self._server_instances.pop(session_id, None)
        self.evicted += 1
        log.info("closed a least recently used session (%s)", why)
        if transport is not None and self._task_group is not None:
            self._task_group.start_soon(_terminate, transport)

    async def _discard_session(self, session_id: str,
                               transport: StreamableHTTPServerTransport) -> None:
        self._forget(session_id)
        await super()._discard_session(session_id, transport)

    @property
    def open_sessions(self) -> int:
        """Sessions open now."""
        return len(self._server_instances)


async def _terminate(transport: StreamableHTTPServerTransport) -> None:
    with anyio.CancelScope(shield=True):
        await transport.terminate()
