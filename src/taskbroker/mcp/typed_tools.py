"""Every task type is also an MCP tool of its own: its name, its params as the input schema.

``tools/call`` of a typed tool goes through the same service and middleware as
``start_background_task_tool`` (identity, rate limits, validation with the same error texts,
roles).  What it answers depends on the client:

* a client that declared the tasks extension on the request gets a task handle at once (see
  :mod:`.tasks_extension`, which intercepts the call before it reaches this tool);
* any other client gets the result in the same call when the task finishes within
  ``wait_seconds`` (progress notifications meanwhile, when it sent a progress token), or, past
  that, a structured "still running" answer with the task id and how to wait for it.

The SDK's own argument validation is bypassed on purpose (the arguments reach the service as
sent) so every argument error carries the documented ``ValueError:`` kind and the service's
message naming the field.
"""

from __future__ import annotations

import logging
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp.types import CallToolResult, ToolAnnotations

from taskbroker.core.contract.tasktype import TaskType
from taskbroker.core.pipeline.errors import RateLimited
from taskbroker.core.pipeline.models import FINAL_STATUSES
from taskbroker.core.pipeline.service import TaskService
from taskbroker.core.waiting import TaskWatcher
from taskbroker.mcp.caller import ServiceCaller
from taskbroker.mcp.errors import to_tool_error
from taskbroker.mcp.logging_capability import SessionLogLevels
from taskbroker.mcp.raw_args import RawArguments
from taskbroker.mcp.results import TextMode, error_result, pending_result, tool_result
from taskbroker.mcp.waiting import WaitSlots, follow_task

__all__ = ["typed_tools"]

log = logging.getLogger("taskbroker.mcp")


def typed_tools(service: TaskService, caller: ServiceCaller, watcher: TaskWatcher,
                levels: SessionLogLevels, *, wait_seconds: float,
                text: TextMode = "json", slots: WaitSlots | None = None) -> list[Tool]:
    """One tool per registered task type; ``slots`` caps each user's open waits (past it,
    a call answers with its task id at once)."""
    held = slots or WaitSlots(0)
    return [_tool(t, service, caller, watcher, levels, wait_seconds, text, held)
            for t in service.registry.all()]


def _tool(task_type: TaskType, service: TaskService, caller: ServiceCaller,
          watcher: TaskWatcher, levels: SessionLogLevels, wait_seconds: float,
          text: TextMode, slots: WaitSlots) -> Tool:
    name = task_type.name

    async def run(arguments: dict[str, Any], ctx: Context[Any, Any]) -> CallToolResult:
        try:
            receipt = await caller.run(service.start, name, arguments)
        except Exception as exc:  # refused or unavailable: the documented error text
            return error_result(exc, name)
        # from here the task exists: whatever fails, the answer carries its id
        waited = wait_seconds
        try:
            async with slots.hold(caller.principal().user_id):
                await follow_task(ctx, watcher, levels, receipt.task_id, timeout=wait_seconds)
        except RateLimited:  # this user waits in too many calls: answer the task id now
            waited = 0.0
        except Exception as exc:  # the wait broke off (the ledger is away): the id still goes
            log.warning("waiting for task %s failed: %s", receipt.task_id, type(exc).__name__)
        try:
            status = await caller.run(service.status, receipt.task_id)
        except Exception as exc:  # refused (the caller's status limit) or unavailable
            return pending_result(receipt.as_status(), waited=waited,
                                  unread=str(to_tool_error(exc, name).args[0]))
        if status.status in FINAL_STATUSES:
            return tool_result(status, text)
        return pending_result(status, waited=waited)

    role = f" Requires the {task_type.required_role!r} role." if task_type.required_role else ""
    description = (f"{task_type.description}{role} Runs as a background task: the result comes "
                   f"back in this call when it finishes within {wait_seconds:g} s, else the "
                   "answer carries its task_id (wait with wait_for_task_tool). Clients of the "
                   "MCP tasks extension get a task handle at once.")
    output_schema = None
    result_model = getattr(task_type, "result", None)
    if result_model is not None:
        output_schema = _result_or_pending(result_model.model_json_schema())
    return Tool(
        fn=run, name=name, title=_title(name), description=description,
        parameters=task_type.params_schema(),
        fn_metadata=FuncMetadata(arg_model=RawArguments, output_schema=output_schema),
        is_async=True, context_kwarg="ctx",
        annotations=ToolAnnotations(read_only_hint=False,
                                    destructive_hint=task_type.required_role is not None,
                                    idempotent_hint=task_type.idempotent,
                                    open_world_hint=False),
        meta={"taskbroker/task_type": name},
    )


def _title(name: str) -> str:
    return name.replace("_", " ").capitalize()


PENDING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"task_id": {"type": "string"}, "status": {"type": "string"},
                   "progress": {"type": "integer"}, "message": {"type": ["string", "null"]},
                   "next": {"type": "string"}},
    "required": ["task_id", "status", "progress", "next"],
}


def _result_or_pending(result_schema: dict[str, Any]) -> dict[str, Any]:
    """The output schema of a typed tool whose type declares its result: the result, or the
    still-running answer."""
    defs = result_schema.pop("$defs", None)
    schema: dict[str, Any] = {"type": "object", "anyOf": [result_schema, PENDING_SCHEMA]}
    if defs:
        schema["$defs"] = defs
    return schema

