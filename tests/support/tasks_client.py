"""A client side of the MCP tasks extension for tests, on the official SDK's extension API:
``TasksClient`` declares ``io.modelcontextprotocol/tasks`` and claims ``resultType: "task"``;
``get_task``/``cancel_task``/``update_task`` send the extension's methods (with the
``Mcp-Name`` routing header the SDK adds for ``name_param``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import anyio
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.session import ClientSession
from mcp.types import CallToolResult
from mcp_types import Request, RequestParams, Result
from pydantic import ConfigDict, Field

TASKS = "io.modelcontextprotocol/tasks"
TERMINAL = ("completed", "failed", "cancelled")


class TaskHandle(Result):
    """A CreateTaskResult: the task's id and seed state."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    result_type: Literal["task"] = Field(alias="resultType")
    task_id: str = Field(alias="taskId")
    status: str
    created_at: str = Field(alias="createdAt")
    last_updated_at: str = Field(alias="lastUpdatedAt")
    ttl_ms: int | None = Field(alias="ttlMs")
    poll_interval_ms: int | None = Field(default=None, alias="pollIntervalMs")


class TaskIdParams(RequestParams):
    """``{"taskId": ...}``."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")
    task_id: str = Field(alias="taskId")


class GetTask(Request[TaskIdParams, Literal["tasks/get"]]):
    """tasks/get."""

    method: Literal["tasks/get"] = "tasks/get"
    params: TaskIdParams
    name_param: ClassVar[str | None] = "taskId"


class CancelTask(Request[TaskIdParams, Literal["tasks/cancel"]]):
    """tasks/cancel."""

    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskIdParams
    name_param: ClassVar[str | None] = "taskId"


class UpdateTask(Request[TaskIdParams, Literal["tasks/update"]]):
    """tasks/update."""

    method: Literal["tasks/update"] = "tasks/update"
    params: TaskIdParams
    name_param: ClassVar[str | None] = "taskId"


class AnyResult(Result):
    """Any result object, fields kept."""

    model_config = ConfigDict(extra="allow")


async def get_task(session: ClientSession, task_id: str) -> dict[str, Any]:
    """tasks/get, as a plain dict."""
    got = await session.send_request(GetTask(params=TaskIdParams(task_id=task_id)), AnyResult)
    return got.model_dump(by_alias=True, mode="json", exclude_none=True)


async def cancel_task(session: ClientSession, task_id: str) -> dict[str, Any]:
    """tasks/cancel, as a plain dict."""
    got = await session.send_request(CancelTask(params=TaskIdParams(task_id=task_id)),
                                     AnyResult)
    return got.model_dump(by_alias=True, mode="json", exclude_none=True)


async def update_task(session: ClientSession, task_id: str,
                      responses: dict[str, Any]) -> dict[str, Any]:
    """tasks/update with ``inputResponses``, as a plain dict."""
    params = TaskIdParams(task_id=task_id, inputResponses=responses)  # type: ignore[call-arg]
    got = await session.send_request(UpdateTask(params=params), AnyResult)
    return got.model_dump(by_alias=True, mode="json", exclude_none=True)


class TasksClient(ClientExtension):
    """Declares the tasks extension; resolves a task handle by polling tasks/get."""

    identifier = TASKS

    def __init__(self) -> None:
        self.handles: list[TaskHandle] = []
        self.polls = 0

    def claims(self) -> Sequence[ResultClaim[Any]]:
        """``resultType: "task"`` on tools/call."""
        return [ResultClaim(result_type="task", model=TaskHandle, resolve=self._resolve)]

    async def _resolve(self, handle: TaskHandle, ctx: ClaimContext) -> CallToolResult:
        self.handles.append(handle)
        interval = (handle.poll_interval_ms or 500) / 1000
        with anyio.fail_after(120):
            while True:
                task = await get_task(ctx.session, handle.task_id)
                self.polls += 1
                if task["status"] in TERMINAL:
                    if task["status"] == "completed":
                        return CallToolResult.model_validate(task["result"])
                    raise RuntimeError(f"task {handle.task_id} {task['status']}: {task}")
                await anyio.sleep(min(interval, 0.2))


def listen_request(notifications: dict[str, Any], *, request_id: str, declare: bool = True,
                   token: str | None = None) -> tuple[dict[str, str], dict[str, Any]]:
    """(HTTP headers, JSON-RPC body) of a raw ``subscriptions/listen`` on the 2026-07-28
    revision (per-request envelope in ``_meta``; ``declare``: the tasks extension among the
    client capabilities).  The SDK's ``Client.listen()`` knows no ``taskIds``."""
    from mcp.types import LATEST_PROTOCOL_VERSION

    headers = {"Accept": "application/json, text/event-stream",
               "Content-Type": "application/json", "Mcp-Method": "subscriptions/listen",
               "MCP-Protocol-Version": LATEST_PROTOCOL_VERSION}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    meta = {"io.modelcontextprotocol/protocolVersion": LATEST_PROTOCOL_VERSION,
            "io.modelcontextprotocol/clientCapabilities": {
                "extensions": {TASKS: {}} if declare else {}}}
    body = {"jsonrpc": "2.0", "id": request_id, "method": "subscriptions/listen",
            "params": {"notifications": notifications, "_meta": meta}}
    return headers, body
