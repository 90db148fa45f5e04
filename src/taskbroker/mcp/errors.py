"""How operation errors reach MCP clients: one clear, distinct tool error per kind."""

from __future__ import annotations

import logging
import uuid

from mcp.server.mcpserver.exceptions import ToolError

from taskbroker.core.pipeline.errors import client_text

__all__ = ["to_tool_error"]

log = logging.getLogger("taskbroker.mcp")


def to_tool_error(exc: BaseException, tool: str) -> ToolError:
    """A ToolError whose text starts with the seed's exception name and carries the message.

    Known errors keep their message (written for clients, free of secrets); anything else is
    logged with its traceback under a reference id and reported without details.
    """
    text = client_text(exc)
    if text is not None:
        return ToolError(text)
    ref = uuid.uuid4().hex[:12]
    log.error("tool %s failed unexpectedly (ref %s)", tool, ref, exc_info=exc)
    return ToolError(f"InternalError: {tool} failed unexpectedly (reference {ref})")
