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

from mcp.server import MCPServer
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp_types import SubscriptionsListenRequestParams

import taskbroker
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.pipeline.service import TaskService
from taskbroker.core.waiting import TaskWatcher
from taskbroker.mcp.caller import ServiceCaller
from taskbroker.mcp.logging_capability import SessionLogLevels, install_logging
from taskbroker.mcp.results import TextMode
from taskbroker.mcp.seed_tools import MAX_WAIT_SECONDS, seed_tools
from taskbroker.mcp.task_notifications import TaskListenHandler
from taskbroker.mcp.tasks_extension import TasksExtension
from taskbroker.mcp.typed_tools import typed_tools
from taskbroker.mcp.waiting import WaitSlots

__all__ = ["MAX_WAIT_SECONDS", "ServerOptions", "create_server"]


INSTRUCTIONS = """\
taskbroker runs long, compute-heavy jobs in the background. list_task_types_tool shows the task
types and their parameters. Three ways to run one and get its result:
1. call the task type's own tool (e.g. resilience_contingency): it returns the result in the
   same call when the task finishes within about 45 s, else its task_id; clients of the MCP
   tasks extension get a task handle at once and follow it with tasks/get;
2. start_background_task_tool returns a task_id at once; then wait_for_task_tool(task_id)
   returns as soon as the task ends (or after up to 50 s: call it again);
3. or poll get_task_status_tool every poll_interval_seconds (in the start receipt) until the
   status is success, failure or revoked.
Estimated durations and poll intervals come from the recent runs of each type.
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
        text: what tool answers carry as text beside structured content
            (:data:`~taskbroker.mcp.results.TextMode`).
        max_waits_per_user: how many calls of one user may wait at once (0: no limit).
        serve_on_loop: run starts and status reads on the event loop when the service's
            adapters can await their I/O there (:class:`~taskbroker.mcp.caller.ServiceCaller`).
    """

    wait_seconds: float = 45.0
    task_ttl_ms: int | None = 30 * 86_400_000
    poll_interval_ms: int = 2000
    watch_interval: float = 0.5
    text: TextMode = "json"
    max_waits_per_user: int = 100
    serve_on_loop: bool = True


def create_server(
    service: TaskService,
    *,
    local_principal: Principal,
    token_verifier: TokenVerifier | None = None,
    auth: AuthSettings | None = None,
    options: ServerOptions | None = None,
    watcher: TaskWatcher | None = None,
    slots: WaitSlots | None = None,
) -> MCPServer:
    """Build the MCP server for ``service``.

    Args:
        local_principal: the caller when no bearer token is present (stdio).
        token_verifier, auth: bearer-token authentication for streamable HTTP; when given,
            every HTTP request needs a valid token and the token's principal is the caller.
        options: waiting and advertising choices (defaults: :class:`ServerOptions`).
        watcher: the process's task watcher (default: a new one over the service's ledger).
        slots: the process's per-user cap of open waits, shared with the console (default:
            ``options.max_waits_per_user`` for this server alone).
    """
    options = options or ServerOptions()
    watcher = watcher or TaskWatcher(service.ledger, interval=options.watch_interval)
    caller = ServiceCaller(local_principal,
                           loop_service=service if options.serve_on_loop else None)
    levels = SessionLogLevels()
    slots = slots or WaitSlots(options.max_waits_per_user)
    task_tools = typed_tools(service, caller, watcher, levels, wait_seconds=options.wait_seconds,
                             text=options.text, slots=slots)
    tools = seed_tools(service, caller, watcher, levels, text=options.text,
                       slots=slots) + task_tools
    tasks = TasksExtension(service, caller, [t.name for t in task_tools],
                           ttl_ms=options.task_ttl_ms, poll_interval_ms=options.poll_interval_ms,
                           text=options.text)
    bus = InMemorySubscriptionBus()
    mcp = MCPServer(
        name="taskbroker",
        version=taskbroker.__version__,
        instructions=INSTRUCTIONS,
        token_verifier=token_verifier,
        auth=auth,
        tools=tools,
        extensions=[tasks],
        subscriptions=bus,
    )
    # subscriptions/listen with the tasks extension's taskIds: push instead of tasks/get polls
    mcp._lowlevel_server.add_request_handler(
        "subscriptions/listen", SubscriptionsListenRequestParams,
        TaskListenHandler(bus, tasks, watcher, slots))
    install_logging(mcp, levels)
    _advertise_no_prompts(mcp)

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
