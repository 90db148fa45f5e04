"""The seed's tools (start, status, cancel, list, task types), ``retry_task_tool`` and
``wait_for_task_tool``.

Each tool advertises the input and output schema of its signature below, but receives its
arguments as sent (:class:`~taskbroker.mcp.raw_args.RawArguments`): the service counts every
call against the caller's rate limits first, then validates strictly (no ``true`` for an
integer) with errors that name the field.  Every answer is compact JSON text beside the
structured content; every error's text starts with its documented kind (``ValueError:``,
``PermissionError:``, ``RateLimitError:``, ``TaskNotFound:``, ``ConnectionError:``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from taskbroker.core.pipeline.errors import InvalidRequest, RateLimited
from taskbroker.core.pipeline.middleware.validation import check_arguments
from taskbroker.core.pipeline.models import (
    DEFAULT_LIST_LIMIT,
    FINAL_STATUSES,
    MAX_LIST_LIMIT,
    ActiveTasks,
    CancelReceipt,
    StartReceipt,
    TaskStatus,
    TaskTypeInfo,
)
from taskbroker.core.pipeline.service import TaskService
from taskbroker.core.waiting import TaskWatcher
from taskbroker.mcp.caller import ServiceCaller
from taskbroker.mcp.logging_capability import SessionLogLevels
from taskbroker.mcp.raw_args import RawArguments
from taskbroker.mcp.results import TextMode, answer_text, error_result
from taskbroker.mcp.waiting import WaitSlots, follow_task

__all__ = ["MAX_WAIT_SECONDS", "QUICK_TOOLS", "seed_tools"]

#: the longest one wait_for_task_tool call waits (under common client timeouts of 60 s)
MAX_WAIT_SECONDS = 50.0
_WAIT_ARGUMENTS = ("task_id", "timeout_seconds")

Runner = Callable[[dict[str, Any], Context[Any, Any]], Awaitable[Any]]


# --- the advertised shapes (signatures and docstrings; never called) ------------------------


def start_background_task_tool(
    task_type: Annotated[str, Field(description="Task type; see list_task_types_tool.")],
    params: Annotated[dict[str, Any] | None, Field(
        description="Task-specific parameters (the type's params_schema).")] = None,
    priority: Annotated[int | None, Field(ge=0, le=9, description=(
        "Optional Celery priority 0..9."))] = None,
    idempotency_key: Annotated[str | None, Field(max_length=200, description=(
        "Optional key: repeating a start with the same key returns the first task."))] = None,
) -> StartReceipt:
    """Start a background task and return its task_id at once (status "pending").

    Parameters are validated before anything is queued: an unknown task_type or bad
    params is a ValueError naming the field and what is accepted.
    """
    raise NotImplementedError


def get_task_status_tool(
    task_id: Annotated[str, Field(description="Task ID from start_background_task_tool.")],
) -> TaskStatus:
    """Poll a task: status (pending, started, success, failure, revoked, retry), progress
    0-100 as reported by the task, result when it succeeded, error when it failed.

    An unknown task_id is an error (TaskNotFound), never "pending".
    """
    raise NotImplementedError


def cancel_task_tool(
    task_id: Annotated[str, Field(description="Task ID to cancel.")],
) -> CancelReceipt:
    """Cancel a queued or running task: a queued task never runs; a running one is asked to
    stop and terminated after a grace period. A finished task is left as it is (the reply
    says so).
    """
    raise NotImplementedError


def list_active_tasks_tool(
    task_type: Annotated[str | None, Field(description="Only tasks of this type.")] = None,
    limit: Annotated[int, Field(ge=1, le=MAX_LIST_LIMIT, description=(
        "At most this many tasks, oldest first; total_active counts all."))
    ] = DEFAULT_LIST_LIMIT,
) -> ActiveTasks:
    """List queued and running tasks (yours; all of them for admins), oldest first.

    Returns at most ``limit`` tasks (default 100); ``total_active`` counts every one.
    """
    raise NotImplementedError


def retry_task_tool(
    task_id: Annotated[str, Field(description="A finished task's id (e.g. a failed one).")],
) -> StartReceipt:
    """Retry a finished task: start a new task with its type and params, linked to it by
    retry_of (the original is left as it is). Same roles and rate limits as a start; a task
    still pending or running is a ValueError.
    """
    raise NotImplementedError


def list_task_types_tool() -> list[TaskTypeInfo]:
    """Every task type: description, params JSON schema, required role (and whether it changes
    shared state), estimated duration, queue and time limits."""
    raise NotImplementedError


def wait_for_task_tool(
    task_id: Annotated[str, Field(description="Task ID from start_background_task_tool.")],
    timeout_seconds: Annotated[float, Field(gt=0, le=MAX_WAIT_SECONDS, description=(
        f"Wait at most this long (seconds, up to {MAX_WAIT_SECONDS:g})."))] = 30.0,
) -> TaskStatus:
    """Wait for a task: returns as soon as it is finished (success, failure, revoked) with
    the same fields as get_task_status_tool, or after timeout_seconds with its current
    status (call again to keep waiting). Sends progress notifications (when the request
    has a progress token) and log messages about the task while it waits.
    """
    raise NotImplementedError


#: the tools that answer at once and never notify (wait_for_task_tool streams progress)
QUICK_TOOLS = frozenset(f.__name__ for f in (
    start_background_task_tool, get_task_status_tool, cancel_task_tool, list_active_tasks_tool,
    retry_task_tool, list_task_types_tool))


# --- the tools --------------------------------------------------------------------------


def _answer(value: Any, *, wrap: bool, text: TextMode) -> CallToolResult:
    data: Any = (value.model_dump(mode="json") if isinstance(value, BaseModel)
                 else [v.model_dump(mode="json") for v in value])
    structured = {"result": data} if wrap else data
    return CallToolResult(content=[TextContent(type="text", text=answer_text(structured, text))],
                          structured_content=structured)


def _tool(shape: Callable[..., Any], run: Runner, annotations: ToolAnnotations,
          title: str, text: TextMode) -> Tool:
    """A raw-argument tool advertising ``shape``'s schemas and docstring."""
    advertised = Tool.from_function(shape, name=shape.__name__, title=title)
    meta = advertised.fn_metadata
    wrap = meta.wrap_output

    async def call(arguments: dict[str, Any], ctx: Context[Any, Any]) -> CallToolResult:
        try:
            return _answer(await run(arguments, ctx), wrap=wrap, text=text)
        except Exception as exc:  # refused, not found, unavailable: the documented text
            return error_result(exc, shape.__name__)

    return Tool(
        fn=call, name=shape.__name__, title=title, description=advertised.description,
        parameters=advertised.parameters,
        fn_metadata=FuncMetadata(arg_model=RawArguments, output_schema=meta.output_schema,
                                 output_model=meta.output_model, wrap_output=wrap),
        is_async=True, context_kwarg="ctx", annotations=annotations,
    )


def _params_from_text(arguments: dict[str, Any]) -> dict[str, Any]:
    """Some clients send ``params`` as a JSON string: decode it (else leave it, and validation
    says what params must be)."""
    params = arguments.get("params")
    if isinstance(params, str):
        with contextlib.suppress(ValueError):
            arguments = {**arguments, "params": json.loads(params)}
    return arguments


def _timeout(arguments: dict[str, Any]) -> float:
    check_arguments(arguments, _WAIT_ARGUMENTS)
    value = arguments.get("timeout_seconds", 30.0)
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not 0 < value <= MAX_WAIT_SECONDS:
        raise InvalidRequest(f"timeout_seconds: expected a number of seconds in "
                             f"(0, {MAX_WAIT_SECONDS:g}], got {value!r}"[:200])
    return float(value)


def seed_tools(service: TaskService, caller: ServiceCaller, watcher: TaskWatcher,
               levels: SessionLogLevels, *, text: TextMode = "json",
               slots: WaitSlots | None = None) -> list[Tool]:
    """The seven tools over ``service``; ``text`` chooses what their text content carries
    (:data:`~taskbroker.mcp.results.TextMode`); ``slots`` caps each user's open waits."""
    slots = slots or WaitSlots(0)

    def operation(name: str) -> Runner:
        async def run(arguments: dict[str, Any], _ctx: Context[Any, Any]) -> Any:
            if name == "start":
                arguments = _params_from_text(arguments)
            return await caller.run(service.call, name, arguments)
        return run

    async def wait(arguments: dict[str, Any], ctx: Context[Any, Any]) -> TaskStatus:
        task_id = arguments.get("task_id")
        # the status read comes first, so the call is counted against the rate limits even
        # when its timeout is invalid; a rate-limit refusal wins over an argument error
        try:
            status: TaskStatus = await caller.run(service.call, "status", {"task_id": task_id})
        except RateLimited:
            raise
        except Exception:
            _timeout(arguments)
            raise
        timeout = _timeout(arguments)
        if status.status in FINAL_STATUSES:
            return status
        async with slots.hold(caller.principal().user_id):
            await follow_task(ctx, watcher, levels, status.task_id, timeout=timeout)
        result: TaskStatus = await caller.run(service.call, "status", {"task_id": task_id})
        return result

    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    return [
        _tool(start_background_task_tool, operation("start"), ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False,
            open_world_hint=False), "Start a background task", text),
        _tool(get_task_status_tool, operation("status"), read_only,
              "Get a background task's status", text),
        _tool(cancel_task_tool, operation("cancel"), ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True,
            open_world_hint=False), "Cancel a background task", text),
        _tool(list_active_tasks_tool, operation("list"), read_only,
              "List active background tasks", text),
        _tool(retry_task_tool, operation("retry"), ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False,
            open_world_hint=False), "Retry a finished task", text),
        _tool(list_task_types_tool, operation("list_types"), read_only, "List task types", text),
        _tool(wait_for_task_tool, wait, read_only, "Wait for a background task", text),
    ]
