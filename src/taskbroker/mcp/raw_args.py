"""Tool arguments handed on exactly as the client sent them.

The SDK validates a tool's arguments against the function signature before the tool runs, so
its errors (pydantic text with a documentation link, no documented kind) reach clients before
taskbroker's rate limits and validation do, and it coerces loosely (``true`` becomes ``1``).
Tools built on :class:`RawArguments` receive one ``arguments`` dict instead: the service's
middleware counts the call, then validates it with the documented ``ValueError:`` texts.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from pydantic import ConfigDict

__all__ = ["RawArguments"]


class RawArguments(ArgModelBase):
    """Accepts any arguments and hands them on as one dict (the service validates them)."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    def model_dump_one_level(self) -> dict[str, Any]:
        """The arguments as sent, under one keyword."""
        return {"arguments": dict(self.__pydantic_extra__ or {})}
