"""What operations return: the seed contract's fields, as typed pydantic models.

The MCP tools return these directly (structured output with an output schema); the CLI
prints them.  Field names and status values follow ``mcp-async-task-tools.md``; fields beyond
the seed are additions, never renames.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "ACTIVE_STATUS",
    "CLIENT_STATUS",
    "DEFAULT_LIST_LIMIT",
    "FINAL_STATUSES",
    "MAX_LIST_LIMIT",
    "ActiveTask",
    "ActiveTasks",
    "CancelReceipt",
    "StartReceipt",
    "TaskStatus",
    "TaskTypeInfo",
]

#: status values of get_task_status_tool (the seed's, plus "expired" for purged records)
Status = Literal["pending", "started", "success", "failure", "revoked", "retry", "expired"]

#: the ledger's states (core.ports) as get_task_status_tool reports them
CLIENT_STATUS: dict[str, str] = {"queued": "pending", "started": "started", "retry": "retry",
                                 "success": "success", "failure": "failure",
                                 "revoked": "revoked"}
#: the ledger's active states as list_active_tasks_tool reports them
ACTIVE_STATUS: dict[str, str] = {"queued": "queued", "started": "running", "retry": "retry"}
#: client statuses after which a task changes no more
FINAL_STATUSES: tuple[str, ...] = ("success", "failure", "revoked", "expired")

#: how many active tasks a listing returns unless asked for more (``total_active`` counts all)
DEFAULT_LIST_LIMIT = 100
#: the most a listing returns
MAX_LIST_LIMIT = 1000


class StartReceipt(BaseModel):
    """Returned by start: the task id to poll, and what was queued."""

    task_id: str
    task_type: str
    status: Literal["queued"] = "queued"
    estimated_duration: str
    queued_at: dt.datetime
    message: str
    deduplicated: bool = Field(
        default=False,
        description="True when idempotency_key matched an earlier start: task_id is that task's.",
    )


class TaskStatus(BaseModel):
    """Returned by status: where a task is, its progress and its outcome."""

    task_id: str
    status: Status
    progress: int = Field(ge=0, le=100)
    result: dict[str, Any] | None = None
    error: str | None = None
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    task_type: str | None = None
    message: str | None = Field(default=None, description="Latest progress message.")
    queued_at: dt.datetime | None = None


class CancelReceipt(BaseModel):
    """Returned by cancel: the task's status afterwards and what the cancel did."""

    task_id: str
    status: str
    message: str
    canceled_at: dt.datetime | None = None
    changed: bool = Field(description="False when the task had already finished.")


class ActiveTask(BaseModel):
    """One queued or running task in list_active_tasks_tool."""

    task_id: str
    task_name: str
    task_type: str
    status: Literal["queued", "running", "retry"]
    started_at: dt.datetime | None = None
    queued_at: dt.datetime
    progress: int = 0
    owner: str


class ActiveTasks(BaseModel):
    """Returned by list_active: the caller's (or, for admins, everybody's) active tasks."""

    total_active: int
    tasks: list[ActiveTask]
    queried_at: dt.datetime


class TaskTypeInfo(BaseModel):
    """One registered task type, as list_task_types_tool describes it."""

    name: str
    description: str
    params_schema: dict[str, Any]
    required_role: str | None
    mutates: bool = False
    estimated_duration: str
    queue: str
    plugin: str | None
    plugin_version: str | None = None
    idempotent: bool
    soft_time_limit: float | None
    time_limit: float | None
