"""The MCP server: the seed's four tools, ``list_task_types_tool``, ``wait_for_task_tool``, one
typed tool per task type, the tasks extension, the logging capability and a task resource —
all thin adapters over TaskService.

Every tool resolves the caller's principal, runs the service call in a worker thread (the
service blocks on the database and the broker) and maps errors to tool errors
(:class:`~taskbroker.mcp.caller.ServiceCaller`).  Waiting (the wait tool, typed tools) holds no
thread: it follows the task through the process's shared
:class:`~taskbroker.core.waiting.TaskWatcher`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context
from mcp.types import ToolAnnotations
from pydantic import Field

import taskbroker
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
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.pipeline.service import TaskService
from taskbroker.core.waiting import TaskWatcher
from taskbroker.mcp.caller import ServiceCaller
from taskbroker.mcp.logging_capability import SessionLogLevels, install_logging
from taskbroker.mcp.tasks_extension import TasksExtension
from taskbroker.mcp.typed_tools import typed_tools
from taskbroker.mcp.waiting import follow_task

__all__ = ["MAX_WAIT_SECONDS", "ServerOptions", "create_server"]

#: the longest one wait_for_task_tool call waits (under common client timeouts of 60 s)
MAX_WAIT_SECONDS = 50.0

INSTRUCTIONS = """\
taskbroker runs long, compute-heavy jobs in the background. list_task_types_tool shows the task
types and their parameters. Three ways to run one and get its result:
1. call the task type's own tool (e.g. resilience_contingency): it returns the result in the
   same call when the task finishes within about 45 s, else its task_id; clients of the MCP
   tasks extension get a task handle at once and follow it with tasks/get;
2. start_background_task_tool returns a task_id at once; then wait_for_task_tool(task_id)
   returns as soon as the task ends (or after up to 50 s: call it again);
3. or poll get_task_status_tool until the status is success, failure or revoked.
cancel_task_tool cancels; list_active_tasks_tool shows what is queued or running; the resource
taskbroker://tasks/{task_id} reads a task with its full result."""


@dataclass(frozen=True)
class ServerOptions:
    """How the MCP layer waits and what it advertises.

    Attributes:
        wait_seconds: how long a typed tool call waits for its task before answering with
            the task id (keep it under clients' tool-call timeouts).
        task_ttl_ms: the tasks extension's ``ttlMs`` (the ledger retention); None: forever.
        poll_interval_ms: the tasks extension's ``pollIntervalMs``.
        watch_interval: seconds between the shared watcher's reads while clients wait.
    """

    wait_seconds: float = 45.0
    task_ttl_ms: int | None = 30 * 86_400_000
    poll_interval_ms: int = 1000
    watch_interval: float = 0.5


def create_server(
    service: TaskService,
    *,
    local_principal: Principal,
    token_verifier: TokenVerifier | None = None,
    auth: AuthSettings | None = None,
    options: ServerOptions | None = None,
    watcher: TaskWatcher | None = None,
) -> MCPServer:
    """Build the MCP server for ``service``.

    Args:
        local_principal: the caller when no bearer token is present (stdio).
        token_verifier, auth: bearer-token authentication for streamable HTTP; when given,
            every HTTP request needs a valid token and the token's principal is the caller.
        options: waiting and advertising choices (defaults: :class:`ServerOptions`).
        watcher: the process's task watcher (default: a new one over the service's ledger).
    """
    options = options or ServerOptions()
    watcher = watcher or TaskWatcher(service.ledger, interval=options.watch_interval)
    caller = ServiceCaller(local_principal)
    levels = SessionLogLevels()
    task_tools = typed_tools(service, caller, watcher, levels, wait_seconds=options.wait_seconds)
    mcp = MCPServer(
        name="taskbroker",
        version=taskbroker.__version__,
        instructions=INSTRUCTIONS,
        token_verifier=token_verifier,
        auth=auth,
        tools=task_tools,
        extensions=[TasksExtension(service, caller, [t.name for t in task_tools],
                                   ttl_ms=options.task_ttl_ms,
                                   poll_interval_ms=options.poll_interval_ms)],
    )
    install_logging(mcp, levels)
    _advertise_no_prompts(mcp)

    @mcp.tool(
        name="start_background_task_tool",
        title="Start a background task",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False,
                                    idempotent_hint=False, open_world_hint=False),
    )
    async def start_background_task_tool(
        task_type: Annotated[str, Field(description="Task type; see list_task_types_tool.")],
        params: Annotated[dict[str, Any] | None, Field(
            description="Task-specific parameters (the type's params_schema).")] = None,
        priority: Annotated[int | None, Field(ge=0, le=9, description=(
            "Optional Celery priority 0..9."))] = None,
        idempotency_key: Annotated[str | None, Field(max_length=200, description=(
            "Optional key: repeating a start with the same key returns the first task."
        ))] = None,
    ) -> StartReceipt:
        """Start a background task and return its task_id at once (status "queued").

        Parameters are validated before anything is queued: an unknown task_type or bad
        params is a ValueError naming the field and what is accepted.
        """
        return await caller.tool("start_background_task_tool", service.start, task_type, params,
                          priority=priority, idempotency_key=idempotency_key)

    @mcp.tool(
        name="get_task_status_tool",
        title="Get a background task's status",
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
    )
    async def get_task_status_tool(
        task_id: Annotated[str, Field(description="Task ID from start_background_task_tool.")],
    ) -> TaskStatus:
        """Poll a task: status (pending, started, success, failure, revoked, retry), progress
        0-100 as reported by the task, result when it succeeded, error when it failed.

        An unknown task_id is an error (TaskNotFound), never "pending".
        """
        return await caller.tool("get_task_status_tool", service.status, task_id)

    @mcp.tool(
        name="cancel_task_tool",
        title="Cancel a background task",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True,
                                    idempotent_hint=True, open_world_hint=False),
    )
    async def cancel_task_tool(
        task_id: Annotated[str, Field(description="Task ID to cancel.")],
    ) -> CancelReceipt:
        """Cancel a queued or running task: a queued task never runs; a running one is asked to
        stop and terminated after a grace period. A finished task is left as it is (the reply
        says so).
        """
        return await caller.tool("cancel_task_tool", service.cancel, task_id)

    @mcp.tool(
        name="list_active_tasks_tool",
        title="List active background tasks",
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
    )
    async def list_active_tasks_tool(
        task_type: Annotated[str | None, Field(description="Only tasks of this type.")] = None,
        limit: Annotated[int, Field(ge=1, le=MAX_LIST_LIMIT, description=(
            "At most this many tasks, oldest first; total_active counts all."))
        ] = DEFAULT_LIST_LIMIT,
    ) -> ActiveTasks:
        """List queued and running tasks (yours; all of them for admins), oldest first.

        Returns at most ``limit`` tasks (default 100); ``total_active`` counts every one.
        """
        return await caller.tool("list_active_tasks_tool", service.list_active, task_type,
                          limit=limit)

    @mcp.tool(
        name="list_task_types_tool",
        title="List task types",
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
    )
    async def list_task_types_tool() -> list[TaskTypeInfo]:
        """Every task type: description, params JSON schema, required role, estimated duration,
        queue and time limits."""
        return await caller.tool("list_task_types_tool", service.list_types)

    @mcp.tool(
        name="wait_for_task_tool",
        title="Wait for a background task",
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
    )
    async def wait_for_task_tool(
        task_id: Annotated[str, Field(description="Task ID from start_background_task_tool.")],
        ctx: Context[Any, Any],
        timeout_seconds: Annotated[float, Field(gt=0, le=MAX_WAIT_SECONDS, description=(
            f"Wait at most this long (seconds, up to {MAX_WAIT_SECONDS:g})."))] = 30.0,
    ) -> TaskStatus:
        """Wait for a task: returns as soon as it is finished (success, failure, revoked) with
        the same fields as get_task_status_tool, or after timeout_seconds with its current
        status (call again to keep waiting). Sends progress notifications (when the request
        has a progress token) and log messages about the task while it waits.
        """
        status = await caller.tool("wait_for_task_tool", service.status, task_id)
        if status.status in FINAL_STATUSES:
            return status
        await follow_task(ctx, watcher, levels, status.task_id, timeout=timeout_seconds)
        return await caller.tool("wait_for_task_tool", service.status, task_id)

    @mcp.resource("taskbroker://tasks/{task_id}", name="task", title="A background task",
                  description="One of your tasks: status, progress, and its full result or "
                              "error (the same fields as get_task_status_tool).",
                  mime_type="application/json")
    async def task_resource(task_id: str) -> str:
        """The task as JSON (yours only: another user's id reads like an unknown one)."""
        status = await caller.tool("taskbroker://tasks", service.status, task_id)
        return json.dumps(status.model_dump(mode="json"), separators=(",", ":"))

    return mcp


def _advertise_no_prompts(mcp: MCPServer) -> None:
    """taskbroker has no prompts: do not advertise an empty prompts capability (the SDK
    registers the handlers unconditionally; its lowlevel server derives capabilities from
    them)."""
    handlers = mcp._lowlevel_server._request_handlers
    for method in ("prompts/list", "prompts/get"):
        handlers.pop(method, None)
