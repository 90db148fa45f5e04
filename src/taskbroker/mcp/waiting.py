"""Waiting for a task inside an MCP request: progress notifications and log messages while the
task runs, an answer as soon as it ends (or at the deadline).

The waiting itself costs no thread and no query of its own: it follows the task through the
process's shared :class:`~taskbroker.core.waiting.TaskWatcher`.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context

from taskbroker.core.ports import RETRY, STARTED, TERMINAL
from taskbroker.core.waiting import TaskWatcher, WaitSlots
from taskbroker.mcp.logging_capability import SessionLogLevels

__all__ = ["WaitSlots", "follow_task"]


async def follow_task(ctx: Context[Any, Any], watcher: TaskWatcher, levels: SessionLogLevels,
                      task_id: str, *, timeout: float) -> str | None:
    """Follow ``task_id`` (already checked visible to the caller) for up to ``timeout`` s,
    reporting progress (when the client sent a progress token) and lifecycle messages (at the
    levels the client chose).  Returns the last ledger state seen, or None when the task was
    never seen."""
    session = ctx.request_context.session
    request_id = ctx.request_id
    version = ctx.request_context.protocol_version
    last_status: str | None = None
    last_message: str | None = None
    async for snap in watcher.follow(task_id, timeout=timeout):
        await ctx.report_progress(snap.progress, 100, snap.message)
        if snap.status != last_status:
            level = "warning" if snap.status in ("failure", "revoked") else "info"
            text = _lifecycle(task_id, snap.status, last_status)
            if text:
                await levels.send(session, level, {"task_id": task_id, "status": snap.status,
                                                   "message": text},
                                  related_request_id=request_id, protocol_version=version)
        elif snap.message and snap.message != last_message and snap.status == STARTED:
            await levels.send(session, "debug", {"task_id": task_id, "progress": snap.progress,
                                                 "message": snap.message},
                              related_request_id=request_id, protocol_version=version)
        last_status, last_message = snap.status, snap.message
    return last_status


def _lifecycle(task_id: str, status: str, before: str | None) -> str | None:
    if before is None and status not in TERMINAL:
        return None  # where it stood when the wait began is in the answer itself
    if status == STARTED:
        return f"task {task_id} started"
    if status == RETRY:
        return f"task {task_id} will be retried"
    if status in TERMINAL:
        return f"task {task_id} finished: {status}"
    return None
