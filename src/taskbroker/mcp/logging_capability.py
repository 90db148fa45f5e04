"""The MCP logging capability: per-session levels, and task lifecycle messages to the caller.

Clients on handshake revisions (up to 2025-11-25) choose a level with ``logging/setLevel``;
it is kept per connection (default: ``info``) and messages below it are not sent.  On
2026-07-28 the SDK applies the request's own opt-in (``io.modelcontextprotocol/logLevel`` in
``_meta``).  taskbroker sends ``notifications/message`` about the caller's own tasks while a
request waits for one (``wait_for_task_tool``, a typed task tool): started, progress messages,
finished — never anything about other users' tasks.
"""

from __future__ import annotations

import logging
import warnings
import weakref
from typing import Any

from mcp.server import MCPServer
from mcp.server.context import ServerRequestContext
from mcp.types import LoggingLevel, SetLevelRequestParams
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

__all__ = ["LEVELS", "SessionLogLevels", "install_logging"]

log = logging.getLogger("taskbroker.mcp")

# The SDK marks the logging feature deprecated as of 2026-07-28 (SEP-2577) but still serves it:
# taskbroker offers it on purpose, for the clients that use it.
warnings.filterwarnings("ignore", message=r".*SEP-2577.*")

#: syslog severities, lowest first (the MCP logging levels)
LEVELS: tuple[LoggingLevel, ...] = ("debug", "info", "notice", "warning", "error", "critical",
                                    "alert", "emergency")
DEFAULT_LEVEL: LoggingLevel = "info"


class SessionLogLevels:
    """The level each connection asked for with ``logging/setLevel``."""

    def __init__(self) -> None:
        self._levels: weakref.WeakKeyDictionary[Any, LoggingLevel] = weakref.WeakKeyDictionary()

    @staticmethod
    def _key(session: Any) -> Any:
        # one ServerSession per request; the connection lives as long as the client's session
        return getattr(session, "_connection", session)

    def set(self, session: Any, level: LoggingLevel) -> None:
        """Remember ``level`` for the connection of ``session``."""
        self._levels[self._key(session)] = level

    def enabled(self, session: Any, level: LoggingLevel) -> bool:
        """True when a message at ``level`` may go to the connection of ``session``."""
        chosen = self._levels.get(self._key(session), DEFAULT_LEVEL)
        return LEVELS.index(level) >= LEVELS.index(chosen)

    async def send(self, session: Any, level: LoggingLevel, data: Any, *,
                   related_request_id: Any = None, protocol_version: str | None = None) -> None:
        """Send ``data`` at ``level`` when the connection wants it; on 2026-07-28 the request's
        own opt-in decides, which the SDK applies.  A failed send is logged, never raised."""
        if protocol_version not in MODERN_PROTOCOL_VERSIONS and not self.enabled(session, level):
            return
        try:
            await session.send_log_message(level=level, data=data, logger="taskbroker",
                                           related_request_id=related_request_id)
        except Exception as exc:  # the client went away: the wait goes on
            log.debug("log notification not sent: %r", exc)


def install_logging(mcp: MCPServer, levels: SessionLogLevels) -> None:
    """Serve ``logging/setLevel`` (advertising the logging capability on handshake
    revisions)."""

    async def set_level(ctx: ServerRequestContext[Any, Any],
                        params: SetLevelRequestParams) -> dict[str, Any]:
        levels.set(ctx.session, params.level)
        return {}

    mcp._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams,
                                             set_level)
