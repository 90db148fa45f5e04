"""taskbroker: long-running background tasks for MCP clients, on Celery, extended by plugins.

The public API for plugin authors::

    from taskbroker import TaskType, TaskContext, hookimpl

    @hookimpl
    def taskbroker_register_task_types(register):
        register(TaskType(name="hello", description="Says hello.", run=run))
"""

from taskbroker.core.contract.hookspecs import hookimpl
from taskbroker.core.contract.tasktype import (
    NoParams,
    RetryableError,
    TaskCancelled,
    TaskContext,
    TaskType,
)

__all__ = [
    "NoParams",
    "RetryableError",
    "TaskCancelled",
    "TaskContext",
    "TaskType",
    "hookimpl",
]
__version__ = "0.1.0"
