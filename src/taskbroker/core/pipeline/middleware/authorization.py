"""Authorization middleware: roles for task types, ownership for tasks, bound caller params."""

from __future__ import annotations

from typing import Any

from taskbroker.core.pipeline.chain import Call, Middleware
from taskbroker.core.pipeline.errors import PermissionDenied

__all__ = ["AuthorizationMiddleware"]


class AuthorizationMiddleware(Middleware):
    """Enforces who may do what; it fails closed (anything unexpected refuses the call).

    - start: the caller must hold the task type's ``required_role``; a ``caller_param``
      (e.g. ``approved_by``) is filled with the caller's user id, and a different value is
      refused rather than taken on trust.
    - status, cancel, list: a user sees only their own tasks (``call.scope_owner``); admins see
      all.  Another user's task reads exactly like an unknown one (no existence oracle).
    Runs after validation, so ``call.task_type`` and ``call.params`` are known.
    """

    def before(self, call: Call) -> None:
        principal = call.principal
        if principal is None:
            raise PermissionDenied("permission denied: no identity")
        call.scope_owner = None if principal.is_admin else principal.user_id
        if call.operation != "start":
            return
        task_type = call.task_type
        if task_type is None:
            raise PermissionDenied("permission denied: task type not resolved")
        if not principal.has_role(task_type.required_role):
            raise PermissionDenied(
                f"permission denied: task type {task_type.name!r} requires the "
                f"{task_type.required_role!r} role"
            )
        bound = task_type.caller_param
        if bound and call.params is not None:
            given: Any = getattr(call.params, bound, None)
            if given not in (None, "", principal.user_id):
                raise PermissionDenied(
                    f"permission denied: params.{bound} must be the authenticated caller "
                    f"({principal.user_id!r}) or omitted"
                )
            call.params = call.params.model_copy(update={bound: principal.user_id})
