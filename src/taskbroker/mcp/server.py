"""The MCP server: the seed's four tools plus ``list_task_types_tool``, over TaskService.

A thin adapter: each tool resolves the caller's principal, runs the service call in a worker
thread (the service blocks on the database and the broker), and maps errors to tool errors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
from mcp.server import MCPServer
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.types import ToolAnnotations
from pydantic import Field

import taskbroker
from taskbroker.core.pipeline.models import (
    DEFAULT_LIST_LIMIT,
    MAX_LIST_LIMIT,
    ActiveTasks,
    CancelReceipt,
    StartReceipt,
    TaskStatus,
    TaskTypeInfo,
)
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.pipeline.service import TaskService
from taskbroker.mcp.errors import to_tool_error

__all__ = ["create_server"]

T = TypeVar("T")

INSTRUCTIONS = """\
taskbroker runs long, compute-heavy jobs in the background. Call list_task_types_tool to see
the task types and their parameters, start one with start_background_task_tool (it returns a
task_id at once), poll get_task_status_tool every 5-10 seconds until the status is success,
failure or revoked, and cancel with cancel_task_tool. list_active_tasks_tool shows what is
queued or running."""


def create_server(
    service: TaskService,
    *,
    local_principal: Principal,
    token_verifier: TokenVerifier | None = None,
    auth: AuthSettings | None = None,
) -> MCPServer:
    """Build the MCP server for ``service``.

    Args:
        local_principal: the caller when no bearer token is present (stdio).
        token_verifier, auth: bearer-token authentication for streamable HTTP; when given,
            every HTTP request needs a valid token and the token's principal is the caller.
    """
    mcp = MCPServer(
        name="taskbroker",
        version=taskbroker.__version__,
        instructions=INSTRUCTIONS,
        token_verifier=token_verifier,
        auth=auth,
    )

    def principal() -> Principal:
        token = get_access_token()
        if token is None:
            return local_principal
        return Principal(token.subject or token.client_id, frozenset(token.scopes))

    async def call(tool: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        who = principal()
        try:
            return await anyio.to_thread.run_sync(functools.partial(fn, who, *args, **kwargs))
        except Exception as exc:
            raise to_tool_error(exc, tool) from None

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
        return await call("start_background_task_tool", service.start, task_type, params,
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
        return await call("get_task_status_tool", service.status, task_id)

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
        return await call("cancel_task_tool", service.cancel, task_id)

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
        return await call("list_active_tasks_tool", service.list_active, task_type,
                          limit=limit)

    @mcp.tool(
        name="list_task_types_tool",
        title="List task types",
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
    )
    async def list_task_types_tool() -> list[TaskTypeInfo]:
        """Every task type: description, params JSON schema, required role, estimated duration,
        queue and time limits."""
        return await call("list_task_types_tool", service.list_types)

    return mcp
