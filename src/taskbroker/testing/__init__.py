"""Helpers for testing task types: run a handler in-process with a recording context.

The pytest fixtures that run task types on a real embedded broker and worker live in
:mod:`taskbroker.testing.fixtures` (registered as a pytest plugin).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from taskbroker.core.contract.tasktype import TaskContext, TaskType

__all__ = ["RecordingSink", "make_context", "run_handler"]


@dataclass
class RecordingSink:
    """A progress sink that keeps every report in memory and cancels on demand."""

    reports: list[tuple[int, str | None]] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)

    def report_progress(self, task_id: str, progress: int, message: str | None) -> None:
        """Record one progress report."""
        self.reports.append((progress, message))

    def is_cancel_requested(self, task_id: str) -> bool:
        """True once :attr:`cancel` is set."""
        return self.cancel.is_set()


def make_context(
    task_type: str = "test", *, owner: str = "tester", roles: frozenset[str] = frozenset()
) -> tuple[TaskContext, RecordingSink]:
    """A :class:`TaskContext` wired to a fresh :class:`RecordingSink` (checks every call)."""
    sink = RecordingSink()
    ctx = TaskContext("test-task", task_type, sink=sink, owner=owner, roles=roles,
                      check_interval=0.0)
    return ctx, sink


def run_handler(
    task_type: TaskType, params: dict[str, Any] | None = None, *, owner: str = "tester"
) -> tuple[dict[str, Any], RecordingSink]:
    """Validate ``params`` with the type's model and run its handler in this thread."""
    model = task_type.params.model_validate(params or {})
    ctx, sink = make_context(task_type.name, owner=owner)
    return dict(task_type.run(model, ctx)), sink
