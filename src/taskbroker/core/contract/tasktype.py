"""The task-type contract between taskbroker and the plugins that provide task types.

A plugin describes each kind of background job with a :class:`TaskType`: its name, a pydantic
model for its parameters, the role a caller needs, its queue, time limits and retry budget,
and the handler that does the work.  The handler receives the validated parameters and a
:class:`TaskContext`, through which it reports progress and learns that it was cancelled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

__all__ = [
    "NoParams",
    "ProgressSink",
    "RetryableError",
    "TaskCancelled",
    "TaskContext",
    "TaskType",
]


class NoParams(BaseModel):
    """Parameters model for task types that take no parameters (unknown keys are rejected)."""

    model_config = ConfigDict(extra="forbid")


class TaskCancelled(Exception):
    """Raised by :meth:`TaskContext.raise_if_cancelled` to unwind a cancelled handler."""


class RetryableError(Exception):
    """Raise from a handler for a transient failure; the task is retried up to ``max_retries``."""


class ProgressSink(Protocol):
    """Where a :class:`TaskContext` sends progress and asks about cancellation (the ledger)."""

    def report_progress(self, task_id: str, progress: int, message: str | None) -> None:
        """Record ``progress`` (0..100) and an optional human-readable message."""

    def is_cancel_requested(self, task_id: str) -> bool:
        """Return True once somebody asked for this task to stop."""


Handler = Callable[[Any, "TaskContext"], Mapping[str, Any]]


@dataclass(frozen=True)
class TaskType:
    """One kind of background task a plugin offers.

    Attributes:
        name: unique, stable identifier clients pass as ``task_type`` (``[a-z][a-z0-9_]*``).
        description: one or two sentences shown to clients in ``list_task_types_tool``.
        run: the handler, ``run(params, ctx) -> dict``; ``params`` is an instance of
            ``params`` below and the returned dict must be JSON-serialisable.
        params: pydantic model validating the parameters (defaults, bounds); its JSON schema is
            what clients see.  Use :class:`NoParams` for a task without parameters.
        estimated_duration: human-readable guess such as ``"2-5 minutes"``.
        required_role: role a caller must hold to start it (``None``: anyone authenticated).
        mutates: True when the task deletes, activates or changes state other users rely on
            (stored snapshots, fallback schedules, the crisis state); such a type must name a
            ``required_role`` (least privilege: a type that changes shared state is never
            open to every authenticated user).
        queue: Celery queue the task is routed to.
        soft_time_limit: seconds after which the handler gets ``SoftTimeLimitExceeded`` and the
            task ends as failure "time limit exceeded".
        time_limit: hard limit in seconds; past it the worker process running it is killed.
        max_retries: how often a :class:`RetryableError` (or a worker loss, when
            ``idempotent``) is retried before the task fails.
        idempotent: True when running the handler twice is harmless; only then is a task whose
            worker died re-run rather than failed with "worker lost".
        secret_params: parameter names never written to logs, traces or error messages.
        caller_param: name of a parameter that records who asked (e.g. ``approved_by``): the
            service fills it with the authenticated user id and rejects a different value.
        plugin: name of the plugin that registered the type (filled in by the registry).
    """

    name: str
    description: str
    run: Handler
    params: type[BaseModel] = NoParams
    estimated_duration: str = "unknown"
    required_role: str | None = None
    mutates: bool = False
    queue: str = "taskbroker"
    soft_time_limit: float | None = 540.0
    time_limit: float | None = 600.0
    max_retries: int = 3
    idempotent: bool = True
    secret_params: frozenset[str] = field(default_factory=frozenset)
    caller_param: str | None = None
    plugin: str | None = None

    def __post_init__(self) -> None:
        if self.mutates and not self.required_role:
            raise ValueError(
                f"task type {self.name!r}: mutates=True needs a required_role (a task that "
                "changes shared state must not be open to every authenticated user)")

    @property
    def celery_name(self) -> str:
        """The Celery task name this type is registered and sent under."""
        return f"taskbroker.tasks.{self.name}"

    def params_schema(self) -> dict[str, Any]:
        """JSON schema of the parameters, as clients see it."""
        return self.params.model_json_schema()


class TaskContext:
    """What a running handler may use: progress reporting, cancellation, identity, a logger.

    Handlers should call :meth:`progress` as they go (it is cheap: writes are coalesced) and
    check :meth:`cancelled` (or call :meth:`raise_if_cancelled`) between units of work.
    """

    def __init__(
        self,
        task_id: str,
        task_type: str,
        *,
        sink: ProgressSink,
        owner: str | None = None,
        roles: frozenset[str] = frozenset(),
        logger: logging.Logger | Any | None = None,
        check_interval: float = 0.25,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.task_id = task_id
        self.task_type = task_type
        self.owner = owner
        self.roles = roles
        self.log = logger or logging.getLogger(f"taskbroker.task.{task_type}")
        self._sink = sink
        self._clock = clock or time.monotonic
        self._check_interval = check_interval
        self._last_check = float("-inf")
        self._cancelled = False
        self._last_write = float("-inf")
        self._last_progress = -1

    def progress(self, percent: float, message: str | None = None) -> None:
        """Report progress in percent (clamped to 0..100) with an optional message.

        Writes are coalesced to a few per second; 0 and 100 and message changes always go out.
        Progress is best effort: a report the ledger cannot take (it blinked) is logged and
        dropped, never raised into the handler.
        """
        pct = max(0, min(100, int(percent)))
        now = self._clock()
        if pct == self._last_progress and message is None:
            return
        if pct not in (0, 100) and now - self._last_write < 0.2 and message is None:
            return
        self._last_write = now
        self._last_progress = pct
        try:
            self._sink.report_progress(self.task_id, pct, message)
        except Exception as exc:
            self._last_progress = -1  # report it again next time
            self.log.warning("progress report for %s dropped (%s)", self.task_id,
                             type(exc).__name__)

    def cancelled(self) -> bool:
        """True once the task was cancelled; handlers should then stop as soon as they can.

        A check the ledger cannot answer (it blinked) counts as "not yet": the next call asks
        again, and the worker's watchdog enforces a cancel anyway.
        """
        if self._cancelled:
            return True
        now = self._clock()
        if now - self._last_check >= self._check_interval:
            self._last_check = now
            try:
                self._cancelled = self._sink.is_cancel_requested(self.task_id)
            except Exception as exc:
                self.log.warning("cancel check for %s failed (%s); asking again later",
                                 self.task_id, type(exc).__name__)
        return self._cancelled

    def raise_if_cancelled(self) -> None:
        """Raise :class:`TaskCancelled` when the task was cancelled (a convenient stop point)."""
        if self.cancelled():
            raise TaskCancelled(self.task_id)
