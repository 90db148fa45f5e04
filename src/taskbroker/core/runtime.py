"""The runtime: what happens to one delivered task, whatever broker delivered it.

claim -> run the handler -> finish, returning an explicit :class:`Outcome`:

1. **claim**: move the ledger record to started for this worker.  A record that is revoked,
   running elsewhere or finished is never started (that is what makes re-delivered messages
   harmless); a message whose record is not there yet waits a moment for it.
2. **run**: validate the parameters and call the handler with a :class:`TaskContext` wired to
   the ledger, while a :class:`Watchdog` writes heartbeats and enforces cancellation.
3. **finish**: record success, failure or retry in the ledger, retrying the write while the
   database is away (a worker must not lose a result because the database blinked).

The broker adapter turns the outcome into its own terms (Celery: ``self.retry``, a raised
error, or a plain return) and observability reads the outcome instead of the ledger.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from taskbroker.core.audit import audit
from taskbroker.core.contract.tasktype import (
    RetryableError,
    TaskCancelled,
    TaskContext,
    TaskType,
)
from taskbroker.core.ports import (
    FAILURE,
    QUEUED,
    RETRY,
    STARTED,
    SUCCESS,
    Ledger,
    PortError,
    Rejected,
    Unavailable,
)

__all__ = ["Outcome", "OutcomeStatus", "Runtime", "Watchdog", "durable"]

log = logging.getLogger("taskbroker.worker")

T = TypeVar("T")

#: what became of one delivery: the ledger's end states, plus "skipped" (not started here:
#: revoked, running elsewhere, finished, or no record) and "revoked" (cancelled while running)
OutcomeStatus = Literal["success", "failure", "retry", "revoked", "skipped"]


@dataclass(frozen=True)
class Outcome:
    """The result of :meth:`Runtime.execute`.

    Attributes:
        status: see :data:`OutcomeStatus`.
        result: the handler's result (success).
        error: the error text recorded in the ledger (failure, retry).
        exc: the exception that ended the handler (failure, retry), for the adapter to raise.
        retry_in: seconds to wait before the next attempt (retry).
    """

    status: OutcomeStatus
    result: dict[str, Any] | None = None
    error: str | None = None
    exc: BaseException | None = None
    retry_in: float | None = None


def durable(fn: Callable[..., T], *args: Any, patience: float, **kwargs: Any) -> T:
    """Call a ledger method, retrying while the ledger is unreachable (up to ``patience`` s).

    The ledger is retried with backoff (0.2 s doubling to 5 s); past ``patience`` the
    :class:`~taskbroker.core.ports.Unavailable` propagates.
    """
    deadline = time.monotonic() + patience
    delay = 0.2
    while True:
        try:
            return fn(*args, **kwargs)
        except Unavailable as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("ledger unavailable (%s); retrying in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


_CONTROL = dict.fromkeys(range(32), " ") | {127: " "}


def _clean(text: str, limit: int = 500) -> str:
    """``text`` without control characters, at most ``limit`` characters."""
    text = " ".join(text.translate(_CONTROL).split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


class Watchdog:
    """While a handler runs: heartbeats to the ledger, and enforcement of cancellation.

    A cancelled handler gets ``grace`` seconds to stop cooperatively; after that, when
    ``terminate`` is allowed (a prefork pool child, which the pool replaces), the process
    kills itself; the message is re-delivered and skipped because the ledger says revoked.
    Elsewhere the watchdog can only log.
    """

    def __init__(self, ledger: Ledger, task_id: str, *, grace: float,
                 heartbeat_interval: float, terminate: bool, poll: float = 0.5) -> None:
        self.ledger, self.task_id = ledger, task_id
        self.grace, self.heartbeat_interval, self.poll = grace, heartbeat_interval, poll
        self.terminate = terminate
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"watchdog-{task_id}",
                                        daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()

    def _loop(self) -> None:
        last_beat = time.monotonic()
        cancelled_at: float | None = None
        while not self._done.wait(self.poll):
            now = time.monotonic()
            try:
                if now - last_beat >= self.heartbeat_interval:
                    self.ledger.heartbeat(self.task_id)
                    last_beat = now
                if cancelled_at is None and self.ledger.is_cancel_requested(self.task_id):
                    cancelled_at = now
            except Exception as exc:  # the database may be briefly away; try again
                log.warning("watchdog for %s: %s", self.task_id, type(exc).__name__)
                continue
            if cancelled_at is not None and now - cancelled_at >= self.grace:
                if self._done.is_set():
                    return
                if self.terminate:
                    log.warning("task %s ignored cancellation for %.0f s: terminating its "
                                "process", self.task_id, self.grace)
                    os.kill(os.getpid(), signal.SIGKILL)
                log.warning("task %s ignored cancellation; this process cannot terminate it",
                            self.task_id)
                return


class Runtime:
    """Runs delivered tasks against a ledger (one instance per worker process tree).

    Args:
        ledger: where records are claimed, reported on and finished.
        cancel_grace: seconds a cancelled handler may take to stop on its own.
        heartbeat_interval: seconds between heartbeats of a running task.
        patience: how long ledger writes are retried while the ledger is unreachable.
        time_limit_errors: exceptions the execution engine raises inside a handler when its
            soft time limit passes (Celery's ``SoftTimeLimitExceeded``); they end the task as
            failure "time limit exceeded".
        transient_errors: connection failures a handler may hit (the database blinked); an
            idempotent task is then retried within its budget instead of failing.
        private_errors: errors whose text must not reach clients (database drivers: their
            messages carry SQL and bound parameters); they read as InternalError.
    """

    def __init__(self, ledger: Ledger, *, cancel_grace: float = 10.0,
                 heartbeat_interval: float = 5.0, patience: float = 120.0,
                 time_limit_errors: tuple[type[BaseException], ...] = (),
                 transient_errors: tuple[type[BaseException], ...] = (Unavailable,),
                 private_errors: tuple[type[BaseException], ...] = (PortError,)) -> None:
        self.ledger = ledger
        self.cancel_grace = cancel_grace
        self.heartbeat_interval = heartbeat_interval
        self.patience = patience
        self.time_limit_errors = time_limit_errors
        self.transient_errors = transient_errors
        self.private_errors = private_errors
        #: True in a process that may kill itself to stop a handler that ignores a cancel
        self.may_terminate = False

    # --- one delivery --------------------------------------------------------------------

    def claim(self, task_id: str, worker: str) -> bool:
        """Move the task to started for ``worker``; False when it must not run here.

        A record that is revoked, running elsewhere or finished is never started.  The service
        commits the record before it publishes the message, so a message without a record
        belongs to no accepted start (its start was taken back, or its record purged): it is
        dropped at once and never holds a worker slot.

        Raises:
            Unavailable: the ledger stayed unreachable for ``patience`` seconds.
        """
        if durable(self.ledger.mark_started, task_id, worker=worker, patience=self.patience):
            return True
        record = durable(self.ledger.get, task_id, patience=self.patience)
        if record is None:
            log.warning("task %s has no ledger record (its start was taken back); message "
                        "dropped", task_id)
            return False
        if record.status in (QUEUED, RETRY) and not record.cancel_requested:
            # it became startable between the two reads (a retry landing): one more try
            return durable(self.ledger.mark_started, task_id, worker=worker,
                           patience=self.patience)
        return False

    def execute(self, task_type: TaskType, task_id: str, params: Mapping[str, Any] | None, *,
                owner: str | None, roles: frozenset[str], worker: str,
                retries: int = 0) -> Outcome:
        """Claim, run and finish one delivery of ``task_id``; never raises for the handler.

        ``retries`` is how many times this task was retried already (its retry budget is the
        type's ``max_retries``).  A type that ``mutates`` shared state writes a
        ``task.applied`` audit event once it has run.

        Raises:
            Unavailable: the claim could not reach the ledger (the adapter should give the
                message back to the broker).
        """
        outcome = self._execute(task_type, task_id, params, owner=owner, roles=roles,
                                worker=worker, retries=retries)
        if task_type.mutates and outcome.status != "skipped":
            audit("task.applied", user=owner, task_type=task_type.name, task_id=task_id,
                  outcome=outcome.status)
        return outcome

    def _execute(self, task_type: TaskType, task_id: str, params: Mapping[str, Any] | None, *,
                 owner: str | None, roles: frozenset[str], worker: str,
                 retries: int) -> Outcome:
        if not self.claim(task_id, worker):
            log.info("task %s not started: revoked, running elsewhere or finished", task_id)
            return Outcome("skipped")
        ctx = TaskContext(
            task_id, task_type.name, sink=self.ledger, owner=owner, roles=roles,
            logger=logging.getLogger(f"taskbroker.task.{task_type.name}"),
        )
        watchdog = Watchdog(self.ledger, task_id, grace=self.cancel_grace,
                            heartbeat_interval=self.heartbeat_interval,
                            terminate=self.may_terminate)
        try:
            model = task_type.params.model_validate(dict(params or {}))
            with watchdog:
                result = dict(task_type.run(model, ctx) or {})
        except TaskCancelled:
            durable(self.ledger.mark_ended, task_id, patience=self.patience)
            return Outcome("revoked")
        except RetryableError as exc:
            error = f"{type(exc).__name__}: {_clean(str(exc))}"
            if retries < task_type.max_retries:
                self._end(task_id, RETRY, error=error)
                return Outcome("retry", error=error, exc=exc, retry_in=min(60, 2 ** retries))
            error = f"{error} (gave up after {task_type.max_retries} retries)"
            return self._fail(task_id, error, exc)
        except Exception as exc:
            if isinstance(exc, self.time_limit_errors):
                limit = task_type.soft_time_limit or 0
                return self._fail(task_id, f"time limit exceeded: soft limit of {limit:g} s",
                                  exc)
            if isinstance(exc, self.transient_errors):
                return self._transient(task_type, task_id, exc, retries)
            return self._fail(task_id, self.describe(task_id, exc), exc)
        try:
            stored = self._end(task_id, SUCCESS, result=result)
        except Rejected as exc:  # e.g. a datetime in the result: not JSON
            return self._fail(task_id, f"ValueError: the task's result could not be stored "
                                       f"({exc}); return JSON-compatible values", exc)
        if not stored:
            # cancelled while finishing: the revoke stands
            durable(self.ledger.mark_ended, task_id, patience=self.patience)
            return Outcome("revoked")
        return Outcome("success", result=result)

    def describe(self, task_id: str, exc: BaseException) -> str:
        """What a client is told about a handler's unexpected exception: its kind, a human
        message and a reference to the worker log, where the traceback is (never SQL, bound
        parameters or driver messages: those errors read as InternalError)."""
        ref = uuid.uuid4().hex[:12]
        log.error("task %s failed (reference %s)", task_id, ref, exc_info=exc)
        if isinstance(exc, self.private_errors):
            return f"InternalError: the task failed on a server error (reference {ref})"
        return f"{type(exc).__name__}: {_clean(str(exc)) or 'no message'} (reference {ref})"

    def _transient(self, task_type: TaskType, task_id: str, exc: BaseException,
                   retries: int) -> Outcome:
        """A connection failure inside the handler: retried when the type allows it."""
        ref = uuid.uuid4().hex[:12]
        log.warning("task %s hit a transient error (reference %s)", task_id, ref, exc_info=exc)
        if task_type.idempotent and retries < task_type.max_retries:
            error = (f"ConnectionError: a service the task needs was briefly unavailable; "
                     f"retrying (reference {ref})")
            self._end(task_id, RETRY, error=error)
            return Outcome("retry", error=error, exc=exc, retry_in=min(60, 2 ** retries))
        why = ("its retry budget is spent" if task_type.idempotent
               else "the task type is not idempotent, so it is not run again")
        return self._fail(task_id, f"ConnectionError: a service the task needs was unavailable "
                                   f"and {why} (reference {ref})", exc)

    def _end(self, task_id: str, status: str, **fields: Any) -> bool:
        return durable(self.ledger.finish, task_id, patience=self.patience, status=status,
                       **fields)

    def _fail(self, task_id: str, error: str, exc: BaseException) -> Outcome:
        if not self._end(task_id, FAILURE, error=error):
            durable(self.ledger.mark_ended, task_id, patience=self.patience)
            return Outcome("revoked")
        return Outcome("failure", error=error, exc=exc)

    # --- events outside the handler's process ----------------------------------------------

    def on_hard_time_limit(self, task_id: str, timeout: float) -> None:
        """The handler's process was killed at its hard time limit: the task failed."""
        self.ledger.finish(task_id, status=FAILURE,
                           error=f"time limit exceeded: hard limit of {timeout:g} s, "
                                 "process killed")

    def on_worker_lost(self, task_id: str, task_type: TaskType | None) -> None:
        """The process running ``task_id`` died: retry it when that is safe, else fail it.

        An idempotent type with retry budget left goes back to "retry" (the broker
        re-delivers its message); anything else ends as failure "worker lost".
        """
        record = self.ledger.get(task_id)
        if record is None:
            return
        if record.status != STARTED:  # e.g. revoked and terminated by the watchdog
            self.ledger.mark_ended(task_id)
            return
        budget = task_type.max_retries if task_type else 0
        if task_type is not None and task_type.idempotent and record.attempts <= budget:
            self.ledger.finish(task_id, status=RETRY, error="worker lost; re-delivered")
        else:
            self.ledger.finish(task_id, status=FAILURE, error="worker lost")
