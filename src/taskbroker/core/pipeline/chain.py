"""The middleware chain every operation passes through.

A :class:`Middleware` has two hooks, :meth:`~Middleware.before` and :meth:`~Middleware.after`,
both no-ops by default.  The chain runs ``before`` hooks in order and ``after`` hooks in
reverse, so layers nest; a middleware whose ``before`` ran always gets its ``after``, with
``call.error`` set when something inside failed.  An exception from ``before`` stops the call
(that is how security middleware fails closed).  Only a middleware that sets
``swallow_errors`` (observability) may have its own failures ignored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from taskbroker.core.contract.tasktype import TaskType
from taskbroker.core.pipeline.principal import Principal

__all__ = ["OPERATIONS", "OPERATION_ARGUMENTS", "Call", "Chain", "Middleware"]

log = logging.getLogger("taskbroker.middleware")

#: the operations a TaskService offers, as middleware sees them
OPERATIONS = ("start", "status", "cancel", "list", "list_types", "retry", "search", "inspect",
              "workers")

#: the arguments each operation accepts (any other is refused by validation, naming these)
OPERATION_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "start": ("task_type", "params", "priority", "idempotency_key"),
    "status": ("task_id",),
    "cancel": ("task_id",),
    "list": ("task_type", "limit"),
    "list_types": (),
    "retry": ("task_id",),
    "search": ("query",),
    "inspect": ("task_id",),
    "workers": (),
}


@dataclass
class Call:
    """One operation in flight: what was asked, by whom, and what came of it.

    Attributes:
        operation: one of :data:`OPERATIONS`.
        principal: the caller (set by the adapter, checked by the identity middleware).
        args: the raw arguments as the adapter received them.
        task_type: the resolved task type (start; status/cancel once the record is read).
        params: validated parameters (start).
        task_id: the task concerned (status, cancel; start once created).
        scope_owner: whose tasks the caller may see: their own user id unless authorization
            widens it to None (all) for admins.  Defaults to "nobody" until identity runs.
        result: the operation's return value.
        error: the exception that ended the call, if any.
        started: ``time.perf_counter()`` when the call began.
        extra: scratch space for middleware (spans, timers).
    """

    operation: str
    principal: Principal | None
    args: dict[str, Any]
    task_type: TaskType | None = None
    params: BaseModel | None = None
    task_id: str | None = None
    scope_owner: str | None = "\x00nobody"
    result: Any = None
    error: BaseException | None = None
    started: float = field(default_factory=time.perf_counter)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def user_id(self) -> str | None:
        """The caller's user id, when known."""
        return self.principal.user_id if self.principal else None


class Middleware:
    """Base class: override :meth:`before` and/or :meth:`after`."""

    #: ignore (log) exceptions this middleware raises; only for observability
    swallow_errors: bool = False

    def before(self, call: Call) -> None:
        """Run before the operation; raise to refuse it."""

    def after(self, call: Call) -> None:
        """Run after the operation (``call.result`` or ``call.error`` is set)."""


class Chain:
    """An ordered, immutable sequence of middleware around an operation handler."""

    def __init__(self, middleware: Iterable[Middleware]) -> None:
        self.middleware: tuple[Middleware, ...] = tuple(middleware)

    def run(self, call: Call, handler: Callable[[Call], Any]) -> Any:
        """Run ``handler(call)`` inside the chain and return its result (or raise its error)."""
        entered: list[Middleware] = []
        try:
            for mw in self.middleware:
                try:
                    mw.before(call)
                except Exception as exc:
                    if not mw.swallow_errors:
                        raise
                    log.warning("%s.before failed: %r", type(mw).__name__, exc)
                entered.append(mw)
            call.result = handler(call)
        except BaseException as exc:
            call.error = exc
        for mw in reversed(entered):
            try:
                mw.after(call)
            except Exception as exc:
                if not mw.swallow_errors:
                    call.error = call.error or exc
                else:
                    log.warning("%s.after failed: %r", type(mw).__name__, exc)
        if call.error is not None:
            raise call.error
        return call.result
