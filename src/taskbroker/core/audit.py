"""The audit log: one structured event per security-relevant action, for a SIEM.

Every event is a log record of the ``taskbroker.audit`` logger (JSON lines like the rest of
the logs) with ``audit: true`` and an ``action``:

``task.start``
    a start was accepted (``deduplicated`` when an idempotency key returned an earlier task).
``task.retry``
    a finished task was started again (``task_id`` the new task, ``retry_of`` the original;
    the new task's ``task.start`` follows the same rules as any start).
``task.cancel``
    a cancel was accepted (``changed``: whether it revoked anything).
``access.denied``
    a call was refused for identity or authorization (``reason`` names the kind).
``task.applied``
    a task type that changes shared state (``mutates``: crisis activation and deactivation,
    snapshot cleanup...) finished running (``outcome``), written by the worker.

Fields: ``user`` (the caller's id), ``operation``, ``task_type``, ``task_id``, ``outcome``.
Never a token, and never parameter or result values.
"""

from __future__ import annotations

from typing import Any

import structlog

__all__ = ["AUDIT_LOGGER", "audit"]

AUDIT_LOGGER = "taskbroker.audit"


def audit(action: str, *, user: str | None, task_type: str | None = None,
          task_id: str | None = None, **fields: Any) -> None:
    """Write one audit event (through the logging configuration current at the call)."""
    structlog.get_logger(AUDIT_LOGGER).info(
        action, audit=True, action=action, user=user, task_type=task_type, task_id=task_id,
        **fields)
