"""One Celery task per task type, each a thin shell around the core
:class:`~taskbroker.core.runtime.Runtime`.

A task named ``taskbroker.tasks.<name>`` carries its type's queue, time limits and retry
budget.  Its body asks the runtime to claim, run and finish the delivery and turns the
:class:`~taskbroker.core.runtime.Outcome` into Celery's terms: ``self.retry`` for a retry, the
handler's exception for a failure (so Celery's own state and signals agree), a plain return
otherwise.  The outcome is left on the request (``request.taskbroker_outcome``) for the
observability signal handlers.  The body never returns the result: the ledger holds it, and
Celery would log it in its "succeeded" line.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from billiard.exceptions import WorkerLostError
from celery import Celery, Task
from celery.exceptions import Reject, SoftTimeLimitExceeded
from celery.worker.request import Request

from taskbroker.core.contract.registry import Registry
from taskbroker.core.contract.tasktype import TaskType
from taskbroker.core.ports import Ledger, PortError, Unavailable
from taskbroker.core.runtime import Runtime
from taskbroker.core.settings import Settings

__all__ = ["OUTCOME_ATTR", "make_runtime", "register_task_types"]

log = logging.getLogger("taskbroker.worker")

#: the request attribute carrying the runtime's Outcome of a delivery
OUTCOME_ATTR = "taskbroker_outcome"


def make_runtime(ledger: Ledger, settings: Settings, *,
                 transient_errors: tuple[type[BaseException], ...] = (),
                 private_errors: tuple[type[BaseException], ...] = ()) -> Runtime:
    """The runtime a Celery worker uses: soft time limits end a task as failure; besides the
    ports' own errors, ``transient_errors`` are retried and ``private_errors`` hidden from
    clients (the worker passes the database drivers')."""
    return Runtime(ledger, cancel_grace=settings.cancel_grace_seconds,
                   heartbeat_interval=settings.heartbeat_interval,
                   patience=settings.ledger_retry_seconds,
                   time_limit_errors=(SoftTimeLimitExceeded,),
                   transient_errors=(Unavailable, *transient_errors),
                   private_errors=(PortError, *private_errors))


class LedgerRequest(Request):
    """Worker-side request that records hard time limits and lost workers in the ledger.

    These events happen in the worker's main process (the child running the task is gone),
    so the task body cannot record them itself.
    """

    runtime: Runtime | None = None
    task_type: TaskType | None = None

    def on_timeout(self, soft: bool, timeout: float) -> None:
        """Celery hook: a time limit passed; a hard one killed the process."""
        super().on_timeout(soft, timeout)
        if not soft and self.runtime is not None:
            self.runtime.on_hard_time_limit(self.id, timeout)

    def on_failure(self, exc_info: Any, send_failed_event: bool = True,
                   return_ok: bool = False) -> None:
        """Celery hook: the task failed outside its body (e.g. its process died)."""
        exc = exc_info.exception
        exc = getattr(exc, "exc", exc)  # billiard may wrap it in ExceptionWithTraceback
        if isinstance(exc, WorkerLostError) and self.runtime is not None:
            self.runtime.on_worker_lost(self.id, self.task_type)
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)


def register_task_types(app: Celery, registry: Registry, runtime: Runtime) -> None:
    """Register one Celery task per task type in ``registry`` on ``app``."""
    hostname = socket.gethostname()
    for task_type in registry.all():
        _register(app, task_type, runtime, hostname)


def _register(app: Celery, task_type: TaskType, runtime: Runtime, hostname: str) -> None:
    request_cls = type(
        f"LedgerRequest_{task_type.name}", (LedgerRequest,),
        {"runtime": runtime, "task_type": task_type},
    )

    def body(self: Task, params: dict[str, Any] | None = None, owner: str | None = None,
             roles: list[str] | None = None) -> None:
        try:
            outcome = runtime.execute(
                task_type, self.request.id, params, owner=owner, roles=frozenset(roles or ()),
                worker=self.request.hostname or hostname, retries=self.request.retries,
            )
        except Unavailable:
            raise Reject("ledger unavailable", requeue=True) from None
        setattr(self.request, OUTCOME_ATTR, outcome)
        if outcome.status == "retry":
            raise self.retry(exc=outcome.exc, countdown=outcome.retry_in,
                             max_retries=task_type.max_retries) from None
        if outcome.status == "failure" and outcome.exc is not None:
            raise outcome.exc

    app.task(
        body,
        name=task_type.celery_name,
        bind=True,
        queue=task_type.queue,
        soft_time_limit=task_type.soft_time_limit,
        time_limit=task_type.time_limit,
        max_retries=task_type.max_retries,
        acks_late=True,
        reject_on_worker_lost=True,
        Request=request_cls,
        typing=False,
    )
