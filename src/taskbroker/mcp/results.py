"""What a finished task looks like to an MCP client: the ``CallToolResult`` its typed tool
returns, and the extension's task object.  One place, so the typed tool's own answer and the
tasks extension's ``tasks/get`` inline the same result."""

from __future__ import annotations

import json
from typing import Any, Literal

from mcp.types import CallToolResult, TextContent

from taskbroker.core.pipeline.models import TaskStatus
from taskbroker.mcp.errors import to_tool_error

__all__ = ["TextMode", "answer_text", "compact_json", "pending_result", "tool_result"]

#: what a tool's text content carries beside its structured content: ``json``, the structured
#: content again as compact JSON (for clients that read only text: MCP's advice), or
#: ``summary``, the same without the task's result, which then travels once (structured)
TextMode = Literal["json", "summary"]


def compact_json(value: Any) -> str:
    """JSON without indentation (what text content carries beside structured content)."""
    return json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False)


def _described(result: Any) -> str:
    """A one-line description of a result that travels in structured content only."""
    size = len(compact_json(result).encode())
    keys = f"; keys: {', '.join(map(str, result))}" if isinstance(result, dict) else ""
    return f"in structuredContent ({size} bytes of JSON{keys})"


def answer_text(structured: Any, mode: TextMode, *, is_result: bool = False) -> str:
    """The text content beside ``structured``.  In ``summary`` mode a task's result (the
    whole of ``structured`` when ``is_result``, else its ``result`` field) is described, not
    repeated; everything else is compact JSON in both modes."""
    if mode == "json":
        return compact_json(structured)
    if is_result:
        return f"finished: success; the result is {_described(structured)}"
    if isinstance(structured, dict) and structured.get("result") is not None:
        return compact_json({**structured, "result": _described(structured["result"])})
    return compact_json(structured)


def tool_result(status: TaskStatus, mode: TextMode = "json") -> CallToolResult:
    """The CallToolResult of a finished task: its result as structured content, or a tool
    error (``isError``) carrying its error text."""
    if status.status == "success":
        result = status.result or {}
        text = answer_text(result, mode, is_result=True)
        return CallToolResult(content=[TextContent(type="text", text=text)],
                              structured_content=result)
    why = status.error or ("the task was canceled" if status.status == "revoked"
                           else f"the task ended as {status.status}")
    return CallToolResult(content=[TextContent(type="text", text=f"{status.status}: {why}")],
                          is_error=True)


def pending_result(status: TaskStatus, *, waited: float,
                   unread: str | None = None) -> CallToolResult:
    """A typed tool's answer when its task did not finish within the wait: where it stands
    and how to wait for it (not an error: the task goes on).  ``unread``: why the task's
    status could not be read after it was started (``status`` is then the start's)."""
    how = ("call wait_for_task_tool with this task_id (or poll get_task_status_tool); the "
           "result is kept in the ledger")
    body = {
        "task_id": status.task_id, "status": status.status, "progress": status.progress,
        "message": status.message,
        "next": (f"still running after {waited:g} s: {how}" if unread is None else
                 f"started, but its status could not be read just now ({unread}): {how}"),
    }
    return CallToolResult(content=[TextContent(type="text", text=compact_json(body))],
                          structured_content=body)


def error_result(exc: BaseException, tool: str) -> CallToolResult:
    """A refused call as a tool error whose text starts with the documented kind
    (``ValueError: ...``, ``PermissionError: ...``)."""
    text = str(to_tool_error(exc, tool).args[0])
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
