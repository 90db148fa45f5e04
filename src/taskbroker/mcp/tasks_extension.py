"""The MCP tasks extension (``io.modelcontextprotocol/tasks``, SEP-2663) served from the ledger.

When a client declares the extension on a ``tools/call`` of a typed task tool, the call is
answered with a task handle (``resultType: "task"``) as soon as the task's ledger record is
committed (a ``tasks/get`` right after resolves); the task id is the ledger id.  The client
follows it with:

* ``tasks/get``: the task's state, with the final ``CallToolResult`` inlined once it finished
  (a task that failed is ``completed`` with ``isError: true``: a tool-level error, as the spec
  requires; ``failed`` is reserved for protocol errors);
* ``tasks/cancel``: acknowledged at once; cancels through the service (cooperative: the task
  may still finish);
* ``tasks/update``: acknowledged; taskbroker's tasks never ask for input, so any
  ``inputResponses`` are ignored, as the spec says for keys that are not outstanding.

Everything goes through TaskService as the caller: identity, rate limits (each method counts
as a status or cancel), ownership.  Another user's task id, an unknown one and a malformed one
all get the same ``-32602`` error.  Status mapping: pending/started/retry -> working,
success/failure -> completed, revoked -> cancelled; a purged record is "Task has expired".

``pollIntervalMs`` (which the spec lets change over a task's life) backs off as a task works:
the floor (``TASKBROKER_TASKS_POLL_SECONDS``), half the median of the type's measured runs, or
a quarter of the task's age, whichever is longest, up to 10 s.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolRequestParams
from mcp_types import RequestParams
from pydantic import ConfigDict, Field

from taskbroker.core.pipeline.errors import (
    BrokerUnavailable,
    InvalidRequest,
    RateLimited,
    TaskNotFound,
)
from taskbroker.core.pipeline.models import TaskStatus
from taskbroker.core.pipeline.service import TaskService
from taskbroker.mcp.caller import ServiceCaller
from taskbroker.mcp.errors import to_tool_error
from taskbroker.mcp.results import TextMode, error_result, tool_result

__all__ = ["TASKS_EXTENSION", "TasksExtension"]

log = logging.getLogger("taskbroker.mcp")

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
#: a refused call (rate limit): the server-error range of JSON-RPC
RATE_LIMITED = -32000

_WORKING = {"pending", "started", "retry"}


#: the longest poll interval advised for a long-running type (a client still hears of the
#: end within this long)
MAX_POLL_MS = 10_000
#: a working task's advised poll interval is at least this share of its age (backing off as
#: it runs: a client hears of the end at most a quarter of the task's age late, up to
#: MAX_POLL_MS, and one following an hour-long task polls every 10 s, not every 2)
POLL_AGE_SHARE = 0.25

class TaskIdParams(RequestParams):
    """``{"taskId": ...}`` of tasks/get and tasks/cancel."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")
    task_id: str = Field(alias="taskId")


class TaskUpdateParams(TaskIdParams):
    """``{"taskId": ..., "inputResponses": {...}}`` of tasks/update."""

    input_responses: dict[str, Any] = Field(default_factory=dict, alias="inputResponses")


class TasksExtension(Extension):
    """The tasks extension over TaskService (see the module docstring).

    Args:
        service: the service every method goes through.
        caller: resolves the caller of the current request.
        task_tools: names of the typed task tools (the calls that may become tasks).
        ttl_ms: how long a finished task stays readable (the ledger retention), None: forever.
        poll_interval_ms: the polling interval clients are advised to keep.
    """

    identifier = TASKS_EXTENSION

    def __init__(self, service: TaskService, caller: ServiceCaller, task_tools: Sequence[str],
                 *, ttl_ms: int | None, poll_interval_ms: int = 2000,
                 text: TextMode = "json") -> None:
        self.service = service
        self.text: TextMode = text
        self.caller = caller
        self.task_tools = frozenset(task_tools)
        self.ttl_ms = ttl_ms
        self.poll_interval_ms = poll_interval_ms

    def methods(self) -> Sequence[MethodBinding]:
        """tasks/get, tasks/update and tasks/cancel."""
        return (
            MethodBinding("tasks/get", TaskIdParams, self._get),
            MethodBinding("tasks/update", TaskUpdateParams, self._update),
            MethodBinding("tasks/cancel", TaskIdParams, self._cancel),
        )

    async def intercept_tool_call(self, params: CallToolRequestParams,
                                  ctx: ServerRequestContext[Any, Any],
                                  call_next: CallNext) -> HandlerResult:
        """A typed task tool called by a client that declared the extension: start the task
        and answer its handle once the record is committed."""
        if params.name not in self.task_tools or not declared(ctx):
            return await call_next(ctx)
        try:
            receipt = await self.caller.run(self.service.start, params.name,
                                            dict(params.arguments or {}))
        except Exception as exc:  # refused like the plain tool: a tool-level error
            return error_result(exc, params.name)
        # the handle comes from the start's own receipt: a status read here would cost the
        # caller a status call, and one refused by the rate limit would hide the id of a task
        # that was started
        status = receipt.as_status()
        return {"resultType": "task", **self._task(status, detailed=False,
                                                   poll_ms=await self._poll_ms(status))}

    # --- the methods --------------------------------------------------------------------

    async def _get(self, ctx: ServerRequestContext[Any, Any],
                   params: TaskIdParams) -> dict[str, Any]:
        return {"resultType": "complete", **await self.detailed(params.task_id)}

    async def detailed(self, task_id: str) -> dict[str, Any]:
        """The caller's task as ``tasks/get`` shows it (result or error inlined once it
        ended); MCPError -32602 for an unknown, foreign or expired id."""
        status = await self._status(task_id)
        return self._task(status, detailed=True, poll_ms=await self._poll_ms(status))

    async def _update(self, ctx: ServerRequestContext[Any, Any],
                      params: TaskUpdateParams) -> dict[str, Any]:
        await self._status(params.task_id)  # known and the caller's, or -32602
        return {"resultType": "complete"}

    async def _cancel(self, ctx: ServerRequestContext[Any, Any],
                      params: TaskIdParams) -> dict[str, Any]:
        await self._call(self.service.cancel, params.task_id)
        return {"resultType": "complete"}

    # --- helpers --------------------------------------------------------------------------

    async def _status(self, task_id: str) -> TaskStatus:
        status: TaskStatus = await self._call(self.service.status, task_id)
        if status.status == "expired":
            raise MCPError(code=INVALID_PARAMS, message="Failed to retrieve task: Task has "
                                                        "expired")
        return status

    async def _call(self, fn: Any, task_id: str) -> Any:
        try:
            return await self.caller.run(fn, task_id)
        except (TaskNotFound, InvalidRequest):
            # unknown, malformed and other users' ids read the same
            raise MCPError(code=INVALID_PARAMS,
                           message="Failed to retrieve task: Task not found") from None
        except RateLimited as exc:
            raise MCPError(code=RATE_LIMITED, message=f"RateLimitError: {exc}",
                           data={"retry_after": exc.retry_after}) from None
        except BrokerUnavailable as exc:
            raise MCPError(code=INTERNAL_ERROR, message=f"ConnectionError: {exc}") from None
        except MCPError:
            raise
        except Exception as exc:
            raise MCPError(code=INTERNAL_ERROR,
                           message=str(to_tool_error(exc, "tasks").args[0])) from None

    async def _poll_ms(self, status: TaskStatus) -> int:
        """The advised poll interval for ``status``'s task: ``poll_interval_ms``; longer for a
        type whose measured runs take long (half the median); and, while the task works, at
        least :data:`POLL_AGE_SHARE` of its age (a task running for a minute will hardly end
        in the next second).  At most :data:`MAX_POLL_MS` (or the configured floor, if
        longer), so a client following the advice hears of the end at most that late."""
        advised = self.poll_interval_ms
        registry, book = self.service.registry, self.service.estimates
        if status.task_type and status.task_type in registry:
            task_type = registry.get(status.task_type)
            # the book's cache answers without I/O; a stale entry is read off the event loop
            estimate = book.fresh(task_type) or await anyio.to_thread.run_sync(book.estimate,
                                                                                task_type)
            if estimate.measured_runs:
                advised = max(advised, int(estimate.poll_interval_seconds * 1000))
        if status.status in _WORKING and status.queued_at is not None:
            # ledger records and receipts carry aware UTC times
            age = (dt.datetime.now(dt.UTC) - status.queued_at).total_seconds()
            advised = max(advised, int(age * POLL_AGE_SHARE * 1000))
        return min(max(MAX_POLL_MS, self.poll_interval_ms), advised)

    def _task(self, status: TaskStatus, *, detailed: bool, poll_ms: int) -> dict[str, Any]:
        created = status.queued_at or dt.datetime.now(dt.UTC)
        updated = status.completed_at or status.started_at or created
        task: dict[str, Any] = {
            "taskId": status.task_id, "status": _extension_status(status.status),
            "createdAt": _iso(created), "lastUpdatedAt": _iso(updated),
            "ttlMs": self.ttl_ms, "pollIntervalMs": poll_ms,
        }
        message = status.message or status.error
        if message:
            task["statusMessage"] = message
        if detailed and task["status"] == "completed":
            task["result"] = tool_result(status, self.text).model_dump(
                mode="json", by_alias=True, exclude_none=True)
        return task


def declared(ctx: ServerRequestContext[Any, Any]) -> bool:
    """True when the client declared the tasks extension (on this request, 2026-07-28; at
    initialize on handshake revisions)."""
    capabilities = ctx.session.client_capabilities
    extensions = getattr(capabilities, "extensions", None) or {}
    return TASKS_EXTENSION in extensions


def _extension_status(status: str) -> str:
    if status in _WORKING:
        return "working"
    if status == "revoked":
        return "cancelled"
    return "completed"  # success, failure (a tool-level error: isError in the result)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
