"""What operations return: the seed contract's fields, as typed pydantic models.

The MCP tools return these directly (structured output with an output schema); the CLI
prints them.  Field names and status values follow ``mcp-async-task-tools.md``; fields beyond
the seed are additions, never renames.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from taskbroker.core.ports import TaskEvent, TaskRecord, TaskRow, WorkerRow

__all__ = [
    "ACTIVE_STATUSES",
    "CLIENT_STATUS",
    "DEFAULT_LIST_LIMIT",
    "FINAL_STATUSES",
    "MAX_LIST_LIMIT",
    "ActiveTask",
    "ActiveTasks",
    "CancelReceipt",
    "StartReceipt",
    "TaskDetail",
    "TaskStatus",
    "TaskTypeInfo",
    "WorkersView",
]

#: The one status vocabulary of every answer (start, status, cancel, list, wait, the CLI): the
#: seed's status table, plus "expired" for a record purged by retention.  The ledger's states
#: and Celery's map onto it as follows (README "Task statuses"):
#:
#: ======== ============ ============= ====================================
#: status   ledger state Celery state  meaning
#: ======== ============ ============= ====================================
#: pending  queued       PENDING       accepted, waiting for a worker
#: started  started      STARTED       a worker runs it
#: retry    retry        RETRY         failed transiently, will run again
#: success  success      SUCCESS       finished; ``result`` is set
#: failure  failure      FAILURE       finished; ``error`` is set
#: revoked  revoked      REVOKED       canceled (or never ran)
#: expired  (purged)     --            finished long ago; record purged
#: ======== ============ ============= ====================================
Status = Literal["pending", "started", "success", "failure", "revoked", "retry", "expired"]
#: statuses of a task that is not finished (list_active_tasks_tool lists these)
ActiveStatus = Literal["pending", "started", "retry"]

#: the ledger's states (core.ports) as every answer reports them
CLIENT_STATUS: dict[str, str] = {"queued": "pending", "started": "started", "retry": "retry",
                                 "success": "success", "failure": "failure",
                                 "revoked": "revoked"}
#: client statuses of unfinished tasks
ACTIVE_STATUSES: tuple[str, ...] = ("pending", "started", "retry")
#: client statuses after which a task changes no more
FINAL_STATUSES: tuple[str, ...] = ("success", "failure", "revoked", "expired")

#: how many active tasks a listing returns unless asked for more (``total_active`` counts all)
DEFAULT_LIST_LIMIT = 100
#: the most a listing returns
MAX_LIST_LIMIT = 1000


class StartReceipt(BaseModel):
    """Returned by start: the task id to poll, and what was queued.

    ``status`` is the task's current status: ``pending`` for a new task; for a start that an
    idempotency key matched to an earlier task, that task's status now (maybe ``success``).
    """

    task_id: str
    task_type: str
    status: Status = "pending"
    estimated_duration: str
    queued_at: dt.datetime
    message: str
    poll_interval_seconds: float = Field(
        default=5.0, description="How often to poll this task (from the type's run history).")
    retry_of: str | None = Field(
        default=None, description="The task this one retries (retry_task_tool), if any.")
    deduplicated: bool = Field(
        default=False,
        description="True when idempotency_key matched an earlier start: task_id is that task's.",
    )

    def as_status(self) -> TaskStatus:
        """The task as this start left it, with no read of the ledger: what a status call
        right after the start shows (a deduplicated start's message says so)."""
        return TaskStatus(task_id=self.task_id, status=self.status, progress=0,
                          task_type=self.task_type, queued_at=self.queued_at,
                          retry_of=self.retry_of,
                          message=self.message if self.deduplicated else None)


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
    retry_of: str | None = Field(
        default=None, description="The task this one retries (retry_task_tool), if any.")


class CancelReceipt(BaseModel):
    """Returned by cancel: the task's status afterwards and what the cancel did."""

    task_id: str
    status: Status
    message: str
    canceled_at: dt.datetime | None = None
    changed: bool = Field(description="False when the task had already finished.")


class ActiveTask(BaseModel):
    """One queued or running task in list_active_tasks_tool."""

    task_id: str
    task_name: str
    task_type: str
    status: ActiveStatus
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
    median_seconds: float | None = Field(
        default=None, description="Median run time of the type's recent successful runs.")
    p90_seconds: float | None = Field(
        default=None, description="9 in 10 of those runs took at most this long.")
    measured_runs: int = Field(
        default=0, description="How many runs the figures come from (0: a declared guess).")
    poll_interval_seconds: float = 5.0
    queue: str
    plugin: str | None
    plugin_version: str | None = None
    idempotent: bool
    soft_time_limit: float | None
    time_limit: float | None


@dataclass(frozen=True)
class TaskDetail:
    """What the console shows of one task (:meth:`TaskService.inspect`)."""

    record: TaskRecord
    #: the client-facing view (status vocabulary, final message)
    status: TaskStatus
    events: list[TaskEvent]
    retries: list[TaskRow]


@dataclass(frozen=True)
class WorkersView:
    """Workers, what they run, and queue depths from the ledger (:meth:`TaskService.workers`).

    Attributes:
        workers: every worker row (judge liveness by ``seen_at`` against ``read_at``).
        running: started tasks by worker name.
        queues: per queue, how many tasks are queued, running and waiting to retry.
    """

    workers: list[WorkerRow]
    running: dict[str, list[TaskRow]]
    queues: dict[str, dict[str, int]]
    read_at: dt.datetime
