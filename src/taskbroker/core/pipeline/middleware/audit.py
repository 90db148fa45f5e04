"""Audit middleware: accepted starts and cancels, and refused calls, to the audit log."""

from __future__ import annotations

from taskbroker.core.audit import audit
from taskbroker.core.pipeline.chain import Call, Middleware
from taskbroker.core.pipeline.errors import PermissionDenied, Unauthenticated
from taskbroker.core.pipeline.models import CancelReceipt, StartReceipt

__all__ = ["AuditMiddleware"]


class AuditMiddleware(Middleware):
    """Writes :mod:`taskbroker.core.audit` events after each call (see there for the fields).

    Placed just inside observability, so it sees identity and authorization refusals.
    """

    def after(self, call: Call) -> None:
        task_type = call.task_type.name if call.task_type else None
        if isinstance(call.error, PermissionDenied | Unauthenticated):
            audit("access.denied", user=call.user_id, operation=call.operation,
                  task_type=task_type or _text(call.args.get("task_type")),
                  task_id=call.task_id, reason=type(call.error).__name__)
            return
        result = call.result
        if call.error is None and isinstance(result, StartReceipt) and call.operation == "retry":
            # the new task's own start was audited by the start inside the retry
            audit("task.retry", user=call.user_id, task_type=result.task_type,
                  task_id=result.task_id, retry_of=result.retry_of)
        elif call.error is None and isinstance(result, StartReceipt):
            audit("task.start", user=call.user_id, task_type=result.task_type,
                  task_id=result.task_id, deduplicated=bool(result.deduplicated),
                  mutates=bool(call.task_type and call.task_type.mutates),
                  retry_of=result.retry_of)
        elif call.error is None and isinstance(result, CancelReceipt):
            audit("task.cancel", user=call.user_id, task_type=task_type, task_id=result.task_id,
                  changed=result.changed)


def _text(value: object) -> str | None:
    return value[:100] if isinstance(value, str) else None
